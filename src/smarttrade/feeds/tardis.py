"""Tardis-style trade CSV: exchange,symbol,timestamp,local_timestamp,id,side,price,amount.

Timestamps are microseconds since the epoch. Amounts are fractional: they are kept exact as
integers in the symbol's quantity scale (SMARTTRADE_SYMBOLS, e.g. ``BTCUSDT:0.01:5``).
"""

from __future__ import annotations

from smarttrade.feeds.files import Line, LineParser
from smarttrade.feeds.record import (
    MAX_TIME_US,
    BadRecord,
    TradeRecord,
    digits,
    price_units,
    qty_units,
    side_of,
    symbol_spec,
)

HEADER = ("exchange", "symbol", "timestamp", "local_timestamp", "id", "side", "price", "amount")


class TardisParser(LineParser):
    name = "tardis"

    def parse(self, text: str, line: Line) -> TradeRecord | None:
        cells = text.lstrip("\ufeff").split(",")
        if cells[0] == HEADER[0] and line.number == 1:
            if tuple(c.strip() for c in cells) != HEADER:
                raise BadRecord(f"header is not {','.join(HEADER)}")
            return None
        if len(cells) != len(HEADER):
            raise BadRecord(f"{len(cells)} fields; the Tardis layout has {len(HEADER)}")
        symbol = cells[1].strip()
        spec = symbol_spec(symbol)
        stamp = cells[2].strip()
        if not digits(stamp) or len(stamp) > 18 or not 0 < int(stamp) < MAX_TIME_US:
            raise BadRecord(f"timestamp: {stamp[:20]!r} is not microseconds since the epoch")
        return TradeRecord(
            symbol=symbol,
            price=price_units(spec, cells[6], "price"),
            qty=qty_units(spec, cells[7], "amount"),
            side=side_of(cells[5]),
            time_us=int(stamp),
            trade_id=cells[4].strip()[:64],  # a comma cannot be in it: it splits the line
        )
