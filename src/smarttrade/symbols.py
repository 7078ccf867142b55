"""Instrument specs: the one place that knows ticks, price scales and tickers.

A footprint LEVEL is ``round(price * price_scale)`` (the contract's example: DOL 5.234 ->
``footprint:DOL:5234``, so DOL and WDO use a scale of 1000, which also holds B3's three-decimal
prices such as 5234.500 exactly). Inside the engine prices stay integers in that scale.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
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
        text = f"{Decimal(level) / self.price_scale:f}"
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
