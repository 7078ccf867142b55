"""MetaTrader 5 tick exports: tab separated <DATE> <TIME> <BID> <ASK> <LAST> <VOLUME> <FLAGS>.

Rows without LAST are quote updates: they move the bid/ask used to classify later trades. FLAGS
bit 32 marks a buy, 64 a sell; a trade with neither is classified by the engine. Times are in the
broker's zone (America/Sao_Paulo for B3 brokers; ``tz`` to change). The export carries no symbol,
so it is given (``--symbol``).
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from smarttrade.feeds.b3 import B3_TZ
from smarttrade.feeds.files import Line, LineParser
from smarttrade.feeds.record import (
    BUY,
    SELL,
    UNKNOWN,
    BadRecord,
    TradeRecord,
    digits,
    price_units,
    qty_units,
    symbol_spec,
)

FLAG_BUY, FLAG_SELL = 32, 64


class Mt5Parser(LineParser):
    name = "mt5"

    def __init__(self, symbol: str, tz: ZoneInfo = B3_TZ) -> None:
        self.symbol = symbol
        self.spec = symbol_spec(symbol)
        self.tz = tz
        self.bid = 0
        self.ask = 0

    def parse(self, text: str, line: Line) -> TradeRecord | None:
        cells = text.split("\t")
        if cells[0].startswith("<"):
            return None  # header
        if len(cells) != 7:
            raise BadRecord(f"{len(cells)} fields; an MT5 tick row has 7")
        day, clock, bid, ask, last, volume, flags = (c.strip() for c in cells)
        try:
            moment = datetime.strptime(f"{day} {clock}", "%Y.%m.%d %H:%M:%S.%f")
        except ValueError:
            try:
                moment = datetime.strptime(f"{day} {clock}", "%Y.%m.%d %H:%M:%S")
            except ValueError:
                raise BadRecord(
                    f"DATE/TIME: {day[:12]!r} {clock[:14]!r} is not YYYY.MM.DD HH:MM:SS.mmm"
                ) from None
        if not digits(flags):
            raise BadRecord(f"FLAGS: {flags[:10]!r} is not a number")
        if bid:
            self.bid = price_units(self.spec, bid, "BID")
        if ask:
            self.ask = price_units(self.spec, ask, "ASK")
        if not last:
            return None  # a quote update
        bits = int(flags)
        side = BUY if bits & FLAG_BUY else SELL if bits & FLAG_SELL else UNKNOWN
        if bits & FLAG_BUY and bits & FLAG_SELL:
            raise BadRecord(f"FLAGS: {bits} marks both buy and sell")
        local = moment.replace(tzinfo=self.tz)
        time_us = int(local.timestamp()) * 10**6 + local.microsecond
        return TradeRecord(
            symbol=self.symbol,
            price=price_units(self.spec, last, "LAST"),
            qty=qty_units(self.spec, volume or "0", "VOLUME"),
            side=side,
            time_us=time_us,
            trade_id=str(line.ordinal),  # the export has none; its place in the input is unique
            bid=self.bid,
            ask=self.ask,
        )
