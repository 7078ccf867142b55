"""The one record type every source produces, and the error a parser raises for a bad line."""

from __future__ import annotations

from decimal import Decimal

from msgspec import Struct

from smarttrade.errors import UnknownSymbol, ValidationError
from smarttrade.symbols import SymbolSpec, spec_for

BUY, SELL, UNKNOWN = 1, -1, 0
MAX_LINE_BYTES = 4096  # an oversized record is rejected, not parsed


class BadRecord(Exception):
    """A line that cannot become a trade; the message is the dead-letter reason."""


class TradeRecord(Struct, gc=False):
    symbol: str
    price: int  # level units: round(price * price_scale)
    qty: int  # quantity units: qty * 10**qty_decimals
    side: int  # BUY, SELL, or UNKNOWN (to be classified)
    time_us: int  # Unix microseconds
    trade_id: str = ""
    bid: int = 0  # level units; 0 = not known
    ask: int = 0
    cancel: bool = False  # B3 AcaoAtualizacao=2: reverse the trade with this id


def symbol_spec(symbol: str) -> SymbolSpec:
    try:
        return spec_for(symbol)
    except UnknownSymbol:
        raise BadRecord(f"unknown symbol {symbol!r}") from None
    except ValidationError as exc:
        raise BadRecord(str(exc)) from None


MAX_DIGITS = 15  # prices, quantities and times stay well inside exact doubles and int64


def known_symbol(symbol: str) -> bool:
    try:
        spec_for(symbol)
    except ValidationError:
        return False
    return True


def decimal_of(text: str, field: str) -> Decimal:
    """A decimal with at most 15 digits before the point (``1e999999`` is rejected at once)."""
    raw = text.strip()
    if not raw.isascii():
        raise BadRecord(f"{field}: {raw[:40]!r} is not a number")
    try:
        value = Decimal(raw)
    except ArithmeticError:  # InvalidOperation, Overflow
        raise BadRecord(f"{field}: {raw[:40]!r} is not a number") from None
    if not value.is_finite():
        raise BadRecord(f"{field}: {raw[:40]!r} is not a finite number")
    if value and value.adjusted() >= MAX_DIGITS:
        raise BadRecord(f"{field}: {raw[:40]} is too large")
    return value


def digits(text: str) -> bool:
    """ASCII digits only (``str.isdigit`` also accepts superscripts such as '²')."""
    return text.isascii() and text.isdigit()


def price_units(spec: SymbolSpec, text: str, field: str = "price", comma: bool = False) -> int:
    """A price in level units; it must be positive and sit on the symbol's tick grid."""
    value = decimal_of(text.replace(",", ".") if comma else text, field)
    if value <= 0:
        raise BadRecord(f"{field}: must be positive (got {text.strip()[:40]})")
    units = value * spec.price_scale
    if units >= 2**53:
        raise BadRecord(f"{field}: {text.strip()[:40]} is too large")
    if units != units.to_integral_value():
        raise BadRecord(f"{field}: {text.strip()} has more decimals than {spec.root}'s price scale")
    level = int(units)
    if level % spec.tick_units:
        raise BadRecord(f"{field}: {text.strip()} is not on {spec.root}'s tick of {spec.tick}")
    return level


def qty_units(spec: SymbolSpec, text: str, field: str = "volume", comma: bool = False) -> int:
    """A quantity in units of 10**-qty_decimals, exact (never a binary float)."""
    value = decimal_of(text.replace(",", ".") if comma else text, field)
    if value <= 0:
        raise BadRecord(f"{field}: must be positive (got {text.strip()[:40]})")
    units = value.scaleb(spec.qty_decimals)
    if units != units.to_integral_value():
        what = "whole contracts" if spec.qty_decimals == 0 else f"{spec.qty_decimals} decimals"
        raise BadRecord(f"{field}: {text.strip()} is not a quantity of {spec.root} ({what})")
    if units > 10**15:
        raise BadRecord(f"{field}: {text.strip()} is too large")
    return int(units)


def side_of(text: str) -> int:
    value = text.strip().lower()
    if value in ("buy", "b", "1"):
        return BUY
    if value in ("sell", "s", "-1"):
        return SELL
    if value in ("", "unknown"):
        return UNKNOWN
    raise BadRecord(f"side: {text.strip()[:20]!r} is not buy, sell or empty")


MAX_TIME_US = 4_102_444_800 * 10**6  # 2100-01-01


def time_us_of(text: str, field: str = "time") -> int:
    """Unix seconds (a decimal, any precision down to the microsecond) or ISO 8601.

    An ISO time without a zone is taken as UTC.
    """
    from datetime import UTC, datetime

    value = text.strip()
    if not value:
        raise BadRecord(f"{field}: missing")
    if value[0].isdigit() and ("-" not in value and ":" not in value):
        seconds = decimal_of(value, field)
        us = seconds.scaleb(6)
        if us != us.to_integral_value():
            raise BadRecord(f"{field}: {value} is finer than a microsecond")
        result = int(us)
    else:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise BadRecord(f"{field}: {value[:40]!r} is neither Unix seconds nor ISO 8601") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
        result = (delta.days * 86_400 + delta.seconds) * 10**6 + delta.microseconds
    if not 0 < result < MAX_TIME_US:
        raise BadRecord(f"{field}: {value[:40]} is out of range")
    return result
