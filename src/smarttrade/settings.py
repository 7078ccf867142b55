"""Runtime settings from the environment and ``.env``, validated before anything connects.

A bad value stops start-up with one line that names the variable and the reason.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qs, urlsplit

from pydantic import BeforeValidator, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from smarttrade.analytics.bars import parse_timeframes
from smarttrade.analytics.calendar import DEFAULT_SESSIONS, Calendar
from smarttrade.errors import SettingsError, SmartTradeError
from smarttrade.keyspace import SPECS, Store, StoreSpec
from smarttrade.symbols import parse_spec


def _as_text(value: object) -> str:
    return str(value).strip()


# Redis takes a TTL up to 2^63 ms, but a TTL this long is a typo, not a cache lifetime.
MAX_TTL_S = 315_360_000  # 10 years
MAX_CONNECTIONS = 1000
_MEMORY_RE = re.compile(r"^\d+(b|k|kb|m|mb|g|gb)?$", re.IGNORECASE | re.ASCII)


def _whole(text: str) -> int | None:
    """``text`` as a non-negative whole number (ASCII digits only), else None."""
    if not (text.isascii() and text.isdigit()):
        return None
    return int(text) if len(text) <= 30 else 10**30  # no 4300-digit int() error


def _db(value: object) -> int:
    text = _as_text(value)
    number = _whole(text)
    if number is None or number > 15:
        raise ValueError(f"must be a database number from 0 to 15 (got {text!r})")
    return number


def _ttl(value: object) -> int:
    text = _as_text(value)
    number = _whole(text)
    if number is None or number <= 0:
        raise ValueError(f"must be a positive whole number (got {text!r})")
    if number > MAX_TTL_S:
        raise ValueError(f"must be {MAX_TTL_S} seconds (10 years) or less (got {text!r})")
    return number


def _count(value: object) -> int:
    text = _as_text(value)
    number = _whole(text)
    if number is None or not 1 <= number <= 1_000_000:
        raise ValueError(f"must be a whole number from 1 to 1000000 (got {text!r})")
    return number


def _connections(value: object) -> int:
    text = _as_text(value)
    number = _whole(text)
    if number is None or not 1 <= number <= MAX_CONNECTIONS:
        raise ValueError(f"must be a whole number from 1 to {MAX_CONNECTIONS} (got {text!r})")
    return number


def _memory(value: object) -> str:
    text = _as_text(value)
    if not _MEMORY_RE.match(text):
        raise ValueError(f"must be a Redis memory size such as 512mb, 2gb or 1073741824 (got {text!r})")
    return text


_PASSWORD_RE = re.compile(r"(//[^/@:]*:)[^@/]*@")


def redact(url: str) -> str:
    """The URL with its password masked; works on URLs too broken to parse."""
    return _PASSWORD_RE.sub(r"\1***@", url)


def _redis_url(value: object) -> str | None:
    if value is None:
        return None
    raw = _as_text(value)
    if not raw:
        return None
    text = redact(raw)
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ValueError(f"cannot parse {text!r}: {exc}") from None
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"scheme must be redis://, rediss:// or unix:// (got {text!r})")
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError(f"no host in {text!r}")
    if parts.scheme == "unix" and not parts.path:
        raise ValueError(f"no socket path in {text!r}")
    # redis-py's from_url lets a database in the URL override the db each store's pool asks for,
    # so every store would share that one database.
    in_path = parts.scheme != "unix" and parts.path.strip("/")
    query_db = parse_qs(parts.query, keep_blank_values=True).get("db")
    if in_path or query_db:
        got = parts.path if in_path else f"?db={query_db[0]}"  # not the whole query: it may hold a password
        raise ValueError(
            f"do not put a database in the URL (got {got!r}); the stores' databases come from REDIS_DB_*"
        )
    return raw


def _symbol_specs(value: object) -> str:
    text = _as_text(value)
    try:
        for item in text.split(","):
            if item.strip():
                parse_spec(item)
    except SmartTradeError as exc:
        raise ValueError(str(exc).partition(": ")[2]) from None
    return text


def _timeframes(value: object) -> str:
    text = _as_text(value)
    parse_timeframes(text)  # ValueError names the bad one
    return text


def _sessions(value: object) -> str:
    text = _as_text(value)
    Calendar.parse(text)
    return text


def _ratio(value: object) -> float:
    text = _as_text(value)
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"must be a number (got {text!r})") from None
    if not (number > 0 and math.isfinite(number)):
        raise ValueError(f"must be a positive number (got {text!r})")
    return number


def _fraction(value: object) -> float:
    number = _ratio(value)
    if number >= 1:
        raise ValueError(f"must be between 0 and 1 (got {_as_text(value)!r})")
    return number


Db = Annotated[int, BeforeValidator(_db)]
Ttl = Annotated[int, BeforeValidator(_ttl)]
Connections = Annotated[int, BeforeValidator(_connections)]
MemorySize = Annotated[str, BeforeValidator(_memory)]
RedisUrl = Annotated[str | None, BeforeValidator(_redis_url)]
SymbolSpecs = Annotated[str, BeforeValidator(_symbol_specs)]
Timeframes = Annotated[str, BeforeValidator(_timeframes)]
Sessions = Annotated[str, BeforeValidator(_sessions)]
Ratio = Annotated[float, BeforeValidator(_ratio)]
Fraction = Annotated[float, BeforeValidator(_fraction)]
Count = Annotated[int, BeforeValidator(_count)]


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "smarttrade"


class Settings(BaseSettings):
    """Contract defaults (DESIGN.md §1) plus the knobs of our own processes."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    redis_url: RedisUrl = None  # unset: start (or attach to) the embedded server
    redis_db_quotes: Db = SPECS[Store.QUOTES].default_db
    redis_db_orderflow: Db = SPECS[Store.ORDERFLOW].default_db
    redis_db_footprint: Db = SPECS[Store.FOOTPRINT].default_db
    redis_db_calc: Db = SPECS[Store.CALC].default_db
    redis_db_sessions: Db = SPECS[Store.SESSIONS].default_db
    redis_db_config: Db = SPECS[Store.CONFIG].default_db
    redis_ttl_quotes: Ttl = SPECS[Store.QUOTES].default_ttl  # type: ignore[assignment]
    redis_ttl_orderflow: Ttl = SPECS[Store.ORDERFLOW].default_ttl  # type: ignore[assignment]
    redis_ttl_footprint: Ttl = SPECS[Store.FOOTPRINT].default_ttl  # type: ignore[assignment]
    redis_ttl_calc: Ttl = SPECS[Store.CALC].default_ttl  # type: ignore[assignment]
    redis_ttl_sessions: Ttl = SPECS[Store.SESSIONS].default_ttl  # type: ignore[assignment]
    # Well below the runbook's 50-connection alert, across all pools of one process.
    redis_max_connections: Connections = 24
    smarttrade_data_dir: Path = _default_data_dir()
    smarttrade_maxmemory: MemorySize = "512mb"
    # Extra instruments, ROOT:TICK:QTY_DECIMALS[:PRICE_SCALE] comma-separated (symbols.parse_spec).
    smarttrade_symbols: SymbolSpecs = ""
    # Order-flow analytics (docs/analytics.md): bars, per-bar footprints, indicators.
    smarttrade_analytics: bool = True
    smarttrade_timeframes: Timeframes = "1m,5m,15m"
    smarttrade_sessions: Sessions = DEFAULT_SESSIONS
    smarttrade_imbalance_ratio: Ratio = 3.0
    smarttrade_imbalance_min_volume: Count = 5
    smarttrade_stacked_levels: Count = 3
    smarttrade_value_area: Fraction = 0.70

    def db(self, store: Store | StoreSpec) -> int:
        spec = store if isinstance(store, StoreSpec) else SPECS[store]
        return getattr(self, f"redis_db_{spec.env.lower()}")

    def ttl(self, store: Store | StoreSpec) -> int | None:
        spec = store if isinstance(store, StoreSpec) else SPECS[store]
        if spec.default_ttl is None:
            return None
        return getattr(self, f"redis_ttl_{spec.env.lower()}")


def load_settings(**overrides: object) -> Settings:
    """Settings from env/.env; a bad value raises SettingsError naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        err = exc.errors()[0]
        variable = str(err["loc"][0]).upper() if err["loc"] else "settings"
        ctx_error = (err.get("ctx") or {}).get("error")
        raise SettingsError(variable, str(ctx_error) if ctx_error else err["msg"]) from None
