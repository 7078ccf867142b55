"""Instrument specs: the one place that knows ticks, price scales, quantity units, calendars
and tickers.

A footprint LEVEL is ``round(price * price_scale)`` (the contract's example: DOL 5.234 ->
``footprint:DOL:5234``, so DOL and WDO use a scale of 1000, which also holds B3's three-decimal
prices such as 5234.500 exactly). Inside the engine prices stay integers in that scale, and
quantities integers in units of ``10**-qty_decimals``; ``qty_text`` turns them back into the
instrument's own units at the edges.

An instrument is one fact: the built-in B3 contracts cannot be redefined, and a second, different
declaration of a root is refused (stores/instruments.py keeps the declarations in Redis).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from smarttrade.errors import UnknownSymbol, ValidationError

# B3 futures month codes, January..December.
MONTH_CODES = "FGHJKMNQUVXZ"
SYMBOL_RE = re.compile(r"^[A-Z0-9][A-Z0-9._-]{0,31}$")
_TICKER_RE = re.compile(rf"^(?P<root>[A-Z]{{3}})(?P<month>[{MONTH_CODES}])(?P<year>\d{{2}})$")


B3_ZONE = "America/Sao_Paulo"
B3 = "B3"  # a spec's zone meaning "B3's calendar": SMARTTRADE_SESSIONS in America/Sao_Paulo
DEFAULT_ZONE = "UTC"  # a declared instrument without a calendar trades 24 h in UTC
DAY = "day"  # the one session of a 24-hour calendar: midnight to midnight in its zone
OFF = "off"  # time outside every session
APART = "/apart"  # a session marked so keeps its own bars but feeds no indicators
DEFAULT_SESSIONS = "regular=09:00-18:25,after=18:30-20:00/apart"
_SESSION_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,31}$")


@dataclass(frozen=True, slots=True)
class SessionSpan:
    name: str
    open_s: int  # seconds after local midnight
    close_s: int  # up to 86400 (24:00)
    apart: bool = False  # no indicators (B3's after-hours)

    @property
    def text(self) -> str:
        return f"{self.name}={_clock(self.open_s)}-{_clock(self.close_s)}{APART if self.apart else ''}"


def _clock(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}"


def _clock_s(text: str, item: str) -> int:
    match = re.fullmatch(r"(\d{2}):(\d{2})", text.strip())
    if not match or int(match[2]) > 59 or int(match[1]) > 24 or (int(match[1]) == 24 and int(match[2])):
        raise ValueError(f"session {item!r} is not NAME=HH:MM-HH:MM (00:00 to 24:00)")
    return int(match[1]) * 3600 + int(match[2]) * 60


def parse_sessions(text: str) -> tuple[SessionSpan, ...]:
    """``NAME=HH:MM-HH:MM[/apart]`` joined by ``,`` or ``+``; any name but ``off``; ``24:00``
    ends a day. ValueError names the bad session."""
    spans = []
    for item in re.split(r"[,+]", text):
        item = item.strip()
        if not item:
            continue
        body, apart = (item[: -len(APART)], True) if item.endswith(APART) else (item, False)
        name, _, hours = body.partition("=")
        a, sep, b = hours.partition("-")
        if not sep:
            raise ValueError(f"session {item!r} is not NAME=HH:MM-HH:MM")
        open_s, close_s = _clock_s(a, item), _clock_s(b, item)
        if not _SESSION_NAME_RE.match(name) or name == OFF:
            raise ValueError(f"session {item!r}: the name must be a word (letters, digits, _) other than off")
        if close_s <= open_s:
            raise ValueError(f"session {item!r}: the close must come after the open")
        spans.append(SessionSpan(name, open_s, close_s, apart))
    if not spans:
        raise ValueError("no sessions")
    spans.sort(key=lambda s: s.open_s)
    for first, second in itertools.pairwise(spans):
        if second.open_s < first.close_s:
            raise ValueError(f"sessions {first.name} and {second.name} overlap")
    if len({s.name for s in spans}) < len(spans):
        raise ValueError("two sessions have the same name")
    return tuple(spans)


@functools.lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    """A time zone by its IANA name; ValueError when there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (an IANA name: UTC, America/Chicago)") from None


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    root: str
    description: str
    tick: Decimal
    price_scale: int
    qty_decimals: int = 0  # B3 trades whole contracts
    zone: str = B3  # B3: SMARTTRADE_SESSIONS in America/Sao_Paulo; else an IANA zone
    sessions: str = ""  # with a zone: canonical NAME=HH:MM-HH:MM+...; empty: 24 h

    @property
    def tick_units(self) -> int:
        """The tick in level units (DOL: 0.5 * 1000 = 500)."""
        return int(self.tick * self.price_scale)

    @property
    def qty_unit(self) -> int:
        """Quantity units per instrument unit (BTC with 5 decimals: 100000)."""
        return 10**self.qty_decimals

    @property
    def builtin(self) -> bool:
        return BUILTIN.get(self.root) == self

    @property
    def declaration(self) -> str:
        """The canonical text of the spec: what the registry stores and conflicts compare."""
        cal = f"@{self.zone}" + (f":{self.sessions}" if self.sessions else "")
        return f"{self.root}:{self.tick.normalize():f}:{self.qty_decimals}:{self.price_scale}{cal}"

    @property
    def tz(self) -> ZoneInfo:
        """The zone its sessions and session days follow."""
        return zone(B3_ZONE if self.zone == B3 else self.zone)

    @property
    def calendar_text(self) -> str:
        if self.zone == B3:
            return "B3 (SMARTTRADE_SESSIONS, America/Sao_Paulo)"
        return f"{self.zone}, " + (self.sessions.replace("+", ", ") if self.sessions else "24 h")

    def level(self, price: float | Decimal) -> int:
        """The integer level of a price, rounded to the nearest unit of the scale."""
        return int((Decimal(str(price)) * self.price_scale).to_integral_value())

    def price(self, level: int) -> float:
        return float(Decimal(level) / self.price_scale)

    def price_text(self, level: int) -> str:
        """The exact decimal text of a level's price, for JSON (5234500 -> ``5234.5``)."""
        return _price_text(level, self.price_scale)

    def qty_text(self, units: int) -> str:
        """Quantity units as the instrument's own decimal text, exact (5234 -> ``5.234`` BTC)."""
        return str(units) if self.qty_decimals == 0 else _qty_text(units, self.qty_decimals)

    def qty(self, units: int) -> int | float:
        """Quantity units as a JSON number in the instrument's units: an int for whole contracts;
        else the nearest double, whose shortest repr is the exact decimal (below 2**53 units)."""
        return units if self.qty_decimals == 0 else units / self.qty_unit

    def qty_units(self, text: str | bytes | int | float) -> int:
        """The instrument's decimal text (or a stored integer) back to quantity units, exactly."""
        if isinstance(text, int):
            return text
        raw = text.decode() if isinstance(text, bytes) else str(text)
        return int((Decimal(raw) * self.qty_unit).to_integral_value())


@functools.lru_cache(maxsize=65_536)
def _price_text(level: int, scale: int) -> str:
    text = f"{Decimal(level) / scale:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


@functools.lru_cache(maxsize=65_536)
def _qty_text(units: int, decimals: int) -> str:
    whole, frac = divmod(abs(units), 10**decimals)
    sign = "-" if units < 0 else ""
    if not frac:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:0{decimals}d}".rstrip("0")


BUILTIN: dict[str, SymbolSpec] = {
    spec.root: spec
    for spec in (
        SymbolSpec("DOL", "US dollar futures (full)", Decimal("0.5"), 1000),
        SymbolSpec("WDO", "US dollar futures (mini)", Decimal("0.5"), 1000),
        SymbolSpec("WIN", "Ibovespa index futures (mini)", Decimal("5"), 1),
        SymbolSpec("IND", "Ibovespa index futures (full)", Decimal("5"), 1),
    )
}
SPECS: dict[str, SymbolSpec] = dict(BUILTIN)  # plus the declared and registered instruments
SPEC_SYNTAX = "ROOT:TICK:QTY_DECIMALS[:PRICE_SCALE][@ZONE[:SESSIONS]]"


def parse_spec(text: str) -> SymbolSpec:
    """``ROOT:TICK:QTY_DECIMALS[:PRICE_SCALE][@ZONE[:SESSIONS]]``, e.g. ``BTCUSDT:0.01:5`` for a
    crypto pair (24 h in UTC), ``ES:0.25:0@America/Chicago:rth=08:30-15:15+eth=17:00-24:00/apart``,
    or ``@B3`` for B3's calendar (SMARTTRADE_SESSIONS in America/Sao_Paulo).

    Without PRICE_SCALE the scale is the tick's decimals (tick 0.1 -> scale 10). Without a
    calendar the instrument trades 24 h in UTC: one session ``day`` per UTC day.
    """
    item = text.strip()
    body, at, calendar = item.partition("@")
    parts = body.split(":")
    if len(parts) not in (3, 4):
        raise ValidationError("symbol spec", f"{item!r} is not {SPEC_SYNTAX}")
    root, tick_text, qty_text = parts[:3]
    try:
        tick = Decimal(tick_text)
        qty_decimals = int(qty_text)
        scale = int(parts[3]) if len(parts) == 4 else 10 ** max(0, -tick.as_tuple().exponent)  # type: ignore[operator]
    except (ArithmeticError, ValueError, TypeError):
        raise ValidationError("symbol spec", f"{item!r}: TICK is a decimal, the rest integers") from None
    if not SYMBOL_RE.match(root) or not tick.is_finite() or tick <= 0:
        raise ValidationError("symbol spec", f"{item!r}: bad root or tick")
    if not 0 <= qty_decimals <= 12 or not 0 < scale <= 10**12:
        raise ValidationError("symbol spec", f"{item!r}: QTY_DECIMALS is 0-12, PRICE_SCALE 1-10^12")
    if (tick * scale) != int(tick * scale):
        raise ValidationError("symbol spec", f"{item!r}: the tick must be whole in the price scale")
    zone_name, sessions = (calendar.partition(":")[::2]) if at else (DEFAULT_ZONE, "")
    if zone_name.upper() == B3:
        zone_name = B3
        if sessions:
            raise ValidationError("symbol spec", f"{item!r}: @B3 takes its sessions from SMARTTRADE_SESSIONS")
    else:
        try:
            zone(zone_name)
            spans = parse_sessions(sessions) if sessions else ()
        except ValueError as exc:
            raise ValidationError("symbol spec", f"{item!r}: {exc}") from None
        day = len(spans) == 1 and spans[0] == SessionSpan(DAY, 0, 86_400)
        sessions = "" if day else "+".join(s.text for s in spans)
    return SymbolSpec(root, f"{root} (declared)", tick, scale, qty_decimals, zone_name, sessions)


def declare(spec: SymbolSpec, where: str = "", hint: str = "") -> bool:
    """Make ``spec`` known to this process; True if it was new. A built-in B3 contract (or one
    of its tickers) cannot be redefined, and a root already known otherwise is a conflict
    (``where`` says where ``spec`` came from, ``hint`` how to resolve it)."""
    check_declarations([spec], where, hint)
    new = spec.root not in SPECS
    SPECS[spec.root] = spec
    return new


def check_declarations(
    specs: list[SymbolSpec], where: str = "", hint: str = "", against_known: bool = True
) -> None:
    """Refuse a built-in's redefinition and two different declarations of one root, among
    ``specs`` and (``against_known``) against what this process knows."""
    seen: dict[str, SymbolSpec] = {}
    for spec in specs:
        ticker = _TICKER_RE.match(spec.root)
        if spec.root in BUILTIN or (ticker and ticker["root"] in BUILTIN):
            raise ValidationError(
                "symbol spec",
                f"{spec.root} is a built-in B3 contract ({_builtin_text(spec.root)}){where}; "
                "it cannot be redefined",
            )
        known = seen.get(spec.root) or (SPECS.get(spec.root) if against_known else None)
        if known is not None and known != spec:
            raise ValidationError(
                "symbol spec",
                f"{spec.declaration}{where} conflicts with {known.declaration}, declared before"
                + (f"; {hint}" if hint else ""),
            )
        seen[spec.root] = spec


def _builtin_text(root: str) -> str:
    match = _TICKER_RE.match(root)
    return BUILTIN[match["root"] if match and match["root"] in BUILTIN else root].declaration


def parse_specs(specs: str) -> list[SymbolSpec]:
    """Comma-separated specs (SMARTTRADE_SYMBOLS, --symbol-spec)."""
    return [parse_spec(item) for item in specs.split(",") if item.strip()]


def register(specs: str, where: str = "") -> list[SymbolSpec]:
    """Declare comma-separated specs in this process (see ``declare``)."""
    added = parse_specs(specs)
    check_declarations(added, where)
    for spec in added:
        declare(spec, where)
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
    if _probe:
        return _probe[0]
    spec = SPECS.get(root_of(symbol))
    if spec is None:
        raise UnknownSymbol(symbol)
    return spec


PROBE_DECIMALS = 8
_probe: list[SymbolSpec] = []  # while probing: every symbol reads with this spec


@contextlib.contextmanager
def probing(decimals: int = PROBE_DECIMALS) -> Iterator[SymbolSpec]:
    """Every symbol reads as one fine-grained instrument (tick 10**-decimals, that many
    quantity decimals), so the feed parsers can read a file nobody declared yet and
    ``symbols guess`` can measure its tick and quantity decimals."""
    spec = SymbolSpec("PROBE", "probe", Decimal(1).scaleb(-decimals), 10**decimals, decimals, DEFAULT_ZONE)
    _probe.append(spec)
    try:
        yield spec
    finally:
        _probe.remove(spec)
