"""Runtime settings from the environment and ``.env``, validated before anything connects.

A bad value stops start-up with one line that names the variable and the reason.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BeforeValidator, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from smarttrade.errors import SettingsError
from smarttrade.keyspace import SPECS, Store, StoreSpec


def _as_text(value: object) -> str:
    return str(value).strip()


def _db(value: object) -> int:
    text = _as_text(value)
    if not text.isdigit() or not 0 <= int(text) <= 15:
        raise ValueError(f"must be a database number from 0 to 15 (got {text!r})")
    return int(text)


def _positive_int(value: object) -> int:
    text = _as_text(value)
    if not text.isdigit() or int(text) <= 0:
        raise ValueError(f"must be a positive whole number (got {text!r})")
    return int(text)


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
    db = parts.path.lstrip("/") if parts.scheme != "unix" else ""
    if db and not (db.isdigit() and int(db) <= 15):
        raise ValueError(f"database in the URL path must be 0-15 (got {db!r})")
    return raw


Db = Annotated[int, BeforeValidator(_db)]
PositiveInt = Annotated[int, BeforeValidator(_positive_int)]
RedisUrl = Annotated[str | None, BeforeValidator(_redis_url)]


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
    redis_ttl_quotes: PositiveInt = SPECS[Store.QUOTES].default_ttl  # type: ignore[assignment]
    redis_ttl_orderflow: PositiveInt = SPECS[Store.ORDERFLOW].default_ttl  # type: ignore[assignment]
    redis_ttl_footprint: PositiveInt = SPECS[Store.FOOTPRINT].default_ttl  # type: ignore[assignment]
    redis_ttl_calc: PositiveInt = SPECS[Store.CALC].default_ttl  # type: ignore[assignment]
    redis_ttl_sessions: PositiveInt = SPECS[Store.SESSIONS].default_ttl  # type: ignore[assignment]
    # Well below the runbook's 50-connection alert, across all pools of one process.
    redis_max_connections: PositiveInt = 24
    smarttrade_data_dir: Path = _default_data_dir()
    smarttrade_maxmemory: str = "512mb"

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
