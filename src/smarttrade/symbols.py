"""Instrument specs: the one place that knows ticks, price scales and tickers.

A footprint LEVEL is ``round(price * price_scale)`` (the contract's example: DOL 5.234 ->
``footprint:DOL:5234``, so DOL and WDO use a scale of 1000, which also holds B3's three-decimal
prices such as 5234.500 exactly). Inside the engine prices stay integers in that scale.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from smarttrade.errors import UnknownSymbol, ValidationError

# B3 futures month codes, January..December.
MONTH_CODES = "FGHJKMNQUVXZ"
SYMBOL_RE = re.compile(r"^[A-Z0-9][A-Z0-9._-]{0,31}$")
_TICKER_RE = re.compile(rf"^(?P<root>[A-Z]{{3}})(?P<month>[{MONTH_CODES}])(?P<year>\d{{2}})$")


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    root: str
    description: str
    tick: Decimal
    price_scale: int
    qty_decimals: int = 0  # B3 trades whole contracts

    @property
    def tick_units(self) -> int:
        """The tick in level units (DOL: 0.5 * 1000 = 500)."""
        return int(self.tick * self.price_scale)

    def level(self, price: float | Decimal) -> int:
        """The integer level of a price, rounded to the nearest unit of the scale."""
        return int((Decimal(str(price)) * self.price_scale).to_integral_value())

    def price(self, level: int) -> float:
        return float(Decimal(level) / self.price_scale)

    def price_text(self, level: int) -> str:
        """The exact decimal text of a level's price, for JSON (5234500 -> ``5234.5``)."""
        return _price_text(level, self.price_scale)


@functools.lru_cache(maxsize=65_536)
def _price_text(level: int, scale: int) -> str:
    text = f"{Decimal(level) / scale:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


SPECS: dict[str, SymbolSpec] = {
    spec.root: spec
    for spec in (
        SymbolSpec("DOL", "US dollar futures (full)", Decimal("0.5"), 1000),
        SymbolSpec("WDO", "US dollar futures (mini)", Decimal("0.5"), 1000),
        SymbolSpec("WIN", "Ibovespa index futures (mini)", Decimal("5"), 1),
        SymbolSpec("IND", "Ibovespa index futures (full)", Decimal("5"), 1),
    )
}


def parse_spec(text: str) -> SymbolSpec:
    """``ROOT:TICK:QTY_DECIMALS[:PRICE_SCALE]``, e.g. ``BTCUSDT:0.1:5`` for a crypto pair.

    Without PRICE_SCALE the scale is the tick's decimals (tick 0.1 -> scale 10).
    """
    parts = text.strip().split(":")
    if len(parts) not in (3, 4):
        raise ValidationError("symbol spec", f"{text!r} is not ROOT:TICK:QTY_DECIMALS[:PRICE_SCALE]")
    root, tick_text, qty_text = parts[:3]
    try:
        tick = Decimal(tick_text)
        qty_decimals = int(qty_text)
        scale = int(parts[3]) if len(parts) == 4 else 10 ** max(0, -tick.as_tuple().exponent)
    except (ArithmeticError, ValueError):
        raise ValidationError("symbol spec", f"{text!r}: TICK is a decimal, the rest integers") from None
    if not SYMBOL_RE.match(root) or tick <= 0 or not 0 <= qty_decimals <= 12 or scale <= 0:
        raise ValidationError("symbol spec", f"{text!r}: bad root, tick, decimals or scale")
    if (tick * scale) != int(tick * scale):
        raise ValidationError("symbol spec", f"{text!r}: the tick must be whole in the price scale")
    return SymbolSpec(root, f"{root} (configured)", tick, scale, qty_decimals)


def register(specs: str) -> list[SymbolSpec]:
    """Add comma-separated specs (SMARTTRADE_SYMBOLS, --symbol-spec) to the known instruments."""
    added = [parse_spec(item) for item in specs.split(",") if item.strip()]
    for spec in added:
        SPECS[spec.root] = spec
    return added


def front_month(root: str, day: date) -> str:
    """The front-month B3 ticker on ``day``: WDO/DOL roll monthly (the next month's contract
    trades during the current one); WIN/IND expire in even months, on the Wednesday nearest the
    15th (approximated by the 15th)."""
    year, month = day.year, day.month
    if root in ("WIN", "IND"):
        if month % 2 or day.day > 15:
            month += 1 if month % 2 else 2
    else:
        month += 1
    if month > 12:
        year, month = year + 1, month - 12
    return f"{root}{MONTH_CODES[month - 1]}{year % 100:02d}"


def check_symbol(symbol: str) -> str:
    """Reject names that would break key parsing (``:``), globbing or the wire contract."""
    if not isinstance(symbol, str) or not SYMBOL_RE.match(symbol):
        raise ValidationError("symbol", f"{symbol!r} is not a symbol (A-Z, 0-9, '.', '_', '-'; 1-32 chars)")
    return symbol


def root_of(symbol: str) -> str:
    """``WINZ25`` -> ``WIN``; a bare root maps to itself."""
    match = _TICKER_RE.match(symbol)
    return match["root"] if match and match["root"] in SPECS else symbol


def spec_for(symbol: str) -> SymbolSpec:
    check_symbol(symbol)
    spec = SPECS.get(root_of(symbol))
    if spec is None:
        raise UnknownSymbol(symbol)
    return spec
