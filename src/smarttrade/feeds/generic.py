"""Generic CSV and JSON-lines trades (docs/ingest.md): symbol, price, volume, side, time,
trade_id, and optionally bid and ask. ``side`` may be empty: the engine classifies it."""

from __future__ import annotations

import csv

import msgspec

from smarttrade.feeds.files import Line, LineParser
from smarttrade.feeds.record import (
    BadRecord,
    TradeRecord,
    price_units,
    qty_units,
    side_of,
    symbol_spec,
    time_us_of,
)

REQUIRED = ("symbol", "price", "volume", "side", "time", "trade_id")
OPTIONAL = ("bid", "ask")


def record_from(fields: dict[str, str]) -> TradeRecord:
    symbol = fields["symbol"].strip()
    spec = symbol_spec(symbol)
    bid = fields.get("bid", "").strip()
    ask = fields.get("ask", "").strip()
    return TradeRecord(
        symbol=symbol,
        price=price_units(spec, fields["price"]),
        qty=qty_units(spec, fields["volume"]),
        side=side_of(fields["side"]),
        time_us=time_us_of(fields["time"]),
        trade_id=_trade_id(fields["trade_id"]),
        bid=price_units(spec, bid, "bid") if bid else 0,
        ask=price_units(spec, ask, "ask") if ask else 0,
    )


def _trade_id(text: str) -> str:
    value = text.strip()
    if "," in value or len(value) > 64 or not value.isprintable():
        raise BadRecord(f"trade_id: {value[:40]!r} must be printable, at most 64 chars, without commas")
    return value


class CsvParser(LineParser):
    """Comma-separated, with a header line naming the columns (any order)."""

    name = "csv"

    def __init__(self) -> None:
        self.columns: list[str] | None = None

    def parse(self, text: str, line: Line) -> TradeRecord | None:
        try:
            cells = next(csv.reader([text]))
        except csv.Error as exc:
            raise BadRecord(f"broken CSV: {exc}") from None
        if self.columns is None or line.number == 1:
            names = [c.strip().lstrip("\ufeff").lower() for c in cells]  # Excel's BOM
            missing = [c for c in REQUIRED if c not in names]
            if missing:
                raise BadRecord(f"header lacks column(s) {', '.join(missing)}")
            self.columns = names
            return None
        if len(cells) != len(self.columns):
            raise BadRecord(f"{len(cells)} fields; the header has {len(self.columns)}")
        return record_from(dict(zip(self.columns, cells, strict=True)))


class JsonLinesParser(LineParser):
    """One JSON object per line with the same fields (numbers or strings)."""

    name = "jsonl"

    def parse(self, text: str, line: Line) -> TradeRecord | None:
        try:
            obj = msgspec.json.decode(text)
        except msgspec.DecodeError as exc:
            raise BadRecord(f"broken JSON: {exc}") from None
        except RecursionError:
            raise BadRecord("broken JSON: nested too deeply") from None
        if not isinstance(obj, dict):
            raise BadRecord("not a JSON object")
        fields: dict[str, str] = {}
        for name in (*REQUIRED, *OPTIONAL):
            value = obj.get(name)
            if value is None:
                if name in REQUIRED and name != "side":
                    raise BadRecord(f"{name}: missing")
                value = ""
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise BadRecord(f"{name}: must be a string or a number")
            fields[name] = repr(value) if isinstance(value, float) else str(value)
        return record_from(fields)
