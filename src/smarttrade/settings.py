"""Runtime settings from the environment and ``.env``, validated before anything connects.

A bad value stops start-up with one line that names the variable and the reason.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qs, urlsplit

from pydantic import BeforeValidator, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from smarttrade.errors import SettingsError, SmartTradeError, redact
from smarttrade.keyspace import INGEST_LEASE_TTL, SPECS, Store, StoreSpec
from smarttrade.symbols import DEFAULT_SESSIONS, check_declarations, parse_sessions, parse_specs
from smarttrade.timeframes import parse_timeframes


def _as_text(value: object) -> str:
    return str(value).strip()


# Redis takes a TTL up to 2^63 ms, but a TTL this long is a typo, not a cache lifetime.
MAX_TTL_S = 315_360_000  # 10 years
MAX_CONNECTIONS = 1000
MIN_MAXMEMORY = 32 * 2**20  # below this an embedded server is full before a first replay ends
MAX_FULL_WAIT_S = 3600.0
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
    if memory_bytes(text) < MIN_MAXMEMORY:
        raise ValueError(
            f"must be at least 32mb: a smaller server is full before one replay ends (got {text!r})"
        )
    return text


_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2, "g": 1000**3, "gb": 1024**3}


def memory_bytes(text: str) -> int:
    """A Redis memory size in bytes, with redis.conf's units (1k = 1000, 1kb = 1024)."""
    number = text.rstrip("bkmgBKMG")
    return int(number) * _UNITS[text[len(number) :].lower()]


def _threshold_memory(value: object) -> str:
    """A memory alert level: a size (400mb) or a share of maxmemory (90%)."""
    text = _as_text(value)
    if text.endswith("%"):
        number = _whole(text[:-1])
        if number is None or not 1 <= number <= 100:
            raise ValueError(
                f"must be a size such as 400mb or a percentage of maxmemory from 1% to 100% (got {text!r})"
            )
        return text
    if not _MEMORY_RE.match(text):
        raise ValueError(
            f"must be a size such as 400mb or a percentage of maxmemory from 1% to 100% (got {text!r})"
        )
    return text


_COMMAND_RE = re.compile(r"^[A-Za-z]{1,32}$")
_RENAMED_RE = re.compile(r"^[A-Za-z0-9_.-]{0,64}$")


def _renamed(value: object) -> str:
    """``CONFIG=cfg-9f2,FLUSHDB=`` : what each command is called on this server (empty: disabled)."""
    text = _as_text(value)
    for item in filter(None, (i.strip() for i in text.split(","))):
        name, eq, renamed = item.partition("=")
        if not eq or not _COMMAND_RE.match(name.strip()) or not _RENAMED_RE.match(renamed.strip()):
            raise ValueError(f"{item!r} is not COMMAND=NEW_NAME (an empty NEW_NAME means disabled)")
    return text


def _wait_s(value: object) -> float:
    number = _ratio(value)
    if number > MAX_FULL_WAIT_S:
        raise ValueError(f"must be at most {MAX_FULL_WAIT_S:g} seconds (got {_as_text(value)!r})")
    return number


def _hours(value: object) -> float:
    number = _ratio(value)
    if number > 24 * 366:
        raise ValueError(f"must be at most a year of hours (got {_as_text(value)!r})")
    return number


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
    if parts.scheme != "unix" and parts.netloc.endswith(":"):
        # urlsplit reads "host:" as no port, and redis-py then connects to the default port:
        # a typo would reach someone else's server
        raise ValueError(f"empty port in {text!r}: give one (host:PORT) or drop the colon")
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
        # built-ins and conflicts among these; against the registry when a command connects
        check_declarations(parse_specs(text), against_known=False)
    except SmartTradeError as exc:
        raise ValueError(str(exc).partition(": ")[2]) from None
    return text


def _parsed_by(parse: Callable[[str], object]) -> Callable[[object], str]:
    """A validator that keeps the text once ``parse`` accepts it (its ValueError names the bad part)."""

    def validate(value: object) -> str:
        text = _as_text(value)
        parse(text)
        return text

    return validate


def _quantity(value: object) -> Decimal:
    """A positive amount in an instrument's own units (5 contracts, 0.25 BTC), kept exact."""
    text = _as_text(value)
    try:
        number = Decimal(text)
    except ArithmeticError:
        raise ValueError(f"must be a number (got {text!r})") from None
    if not (number.is_finite() and 0 < number <= 1_000_000_000):
        raise ValueError(f"must be a positive amount in the instrument's units (got {text!r})")
    return number


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


MIN_LEASE_S, MAX_LEASE_S = 2, 3600  # renewed every third: under 2 s a slow round trip loses it


def _lease_s(value: object) -> int:
    text = _as_text(value)
    number = _whole(text)
    if number is None or not MIN_LEASE_S <= number <= MAX_LEASE_S:
        raise ValueError(f"must be whole seconds from {MIN_LEASE_S} to {MAX_LEASE_S} (got {text!r})")
    return number


Db = Annotated[int, BeforeValidator(_db)]
Ttl = Annotated[int, BeforeValidator(_ttl)]
Connections = Annotated[int, BeforeValidator(_connections)]
MemorySize = Annotated[str, BeforeValidator(_memory)]
RedisUrl = Annotated[str | None, BeforeValidator(_redis_url)]
SymbolSpecs = Annotated[str, BeforeValidator(_symbol_specs)]
Timeframes = Annotated[str, BeforeValidator(_parsed_by(parse_timeframes))]
Sessions = Annotated[str, BeforeValidator(_parsed_by(parse_sessions))]
Ratio = Annotated[float, BeforeValidator(_ratio)]
Fraction = Annotated[float, BeforeValidator(_fraction)]
Count = Annotated[int, BeforeValidator(_count)]
Quantity = Annotated[Decimal, BeforeValidator(_quantity)]
MemoryLevel = Annotated[str, BeforeValidator(_threshold_memory)]
RenamedCommands = Annotated[str, BeforeValidator(_renamed)]
Hours = Annotated[float, BeforeValidator(_hours)]
WaitSeconds = Annotated[float, BeforeValidator(_wait_s)]
LeaseSeconds = Annotated[int, BeforeValidator(_lease_s)]


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "smarttrade"


def _data_dir(value: object) -> Path:
    """An empty SMARTTRADE_DATA_DIR (``VAR= cmd``, an unset shell variable) means the default,
    not the working directory: a server's files must not land in whatever folder we run in."""
    text = _as_text(value)
    return Path(text).expanduser() if text else _default_data_dir()


DataDir = Annotated[Path, BeforeValidator(_data_dir)]

MIN_SECRET_CHARS = 32


def _gateway_secret(value: object) -> str | None:
    """A token-signing secret long enough for HS256 (RFC 7518: at least the hash's 256 bits)."""
    text = _as_text(value) if value is not None else ""
    if not text:
        return None
    if len(text) < MIN_SECRET_CHARS:
        raise ValueError(
            f"must be at least {MIN_SECRET_CHARS} characters (got {len(text)}); "
            "make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return text


def _port(value: object) -> int:
    number = _whole(_as_text(value))
    if number is None or not 0 <= number <= 65535:
        raise ValueError(f"must be a TCP port from 0 to 65535 (got {_as_text(value)!r})")
    return number


def _host(value: object) -> str:
    text = _as_text(value)
    if not text:
        raise ValueError("must not be empty (127.0.0.1 serves this machine only, 0.0.0.0 every interface)")
    return text


MODES = ("standalone", "sentinel", "cluster")


def _mode(value: object) -> str:
    text = _as_text(value).lower() or "standalone"
    if text not in MODES:
        raise ValueError(f"must be one of {', '.join(MODES)} (got {text!r})")
    return text


def parse_addrs(text: str) -> list[tuple[str, int]]:
    """``host:port,host:port`` as pairs; ValueError names the entry that is not one."""
    out: list[tuple[str, int]] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        number = _whole(port) if sep else None
        if not host or number is None or not 0 < number <= 65535:
            raise ValueError(f"{item!r} is not host:port (a comma-separated list of them)")
        out.append((host.strip("[]"), number))
    return out


def _name(value: object) -> str:
    text = _as_text(value)
    if not text or not re.fullmatch(r"[A-Za-z0-9._-]+", text):
        raise ValueError(f"must be a sentinel master name (letters, digits, . _ -; got {text!r})")
    return text


def _tls_file(value: object) -> Path | None:
    text = _as_text(value) if value is not None else ""
    if not text:
        return None
    path = Path(text).expanduser()
    if not path.is_file():
        raise ValueError(f"no such file: {text}")
    return path


def _replicas(value: object) -> int:
    number = _whole(_as_text(value))
    if number is None or number > 16:
        raise ValueError(f"must be a number of replicas from 0 to 16 (got {_as_text(value)!r})")
    return number


Mode = Annotated[str, BeforeValidator(_mode)]
Addrs = Annotated[str, BeforeValidator(_parsed_by(parse_addrs))]
MasterName = Annotated[str, BeforeValidator(_name)]
TlsFile = Annotated[Path | None, BeforeValidator(_tls_file)]
Replicas = Annotated[int, BeforeValidator(_replicas)]


GatewaySecret = Annotated[str | None, BeforeValidator(_gateway_secret)]
Port = Annotated[int, BeforeValidator(_port)]
Host = Annotated[str, BeforeValidator(_host)]


class Settings(BaseSettings):
    """Contract defaults (DESIGN.md §1) plus the knobs of our own processes."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    redis_url: RedisUrl = None  # unset: start (or attach to) the embedded server
    # Topology (docs/scaling.md). Sentinel: the master is asked of REDIS_SENTINELS; cluster: the
    # seeds are REDIS_CLUSTER_NODES (database 0, hash-tagged keys). REDIS_URL then gives only the
    # credentials and, with rediss://, TLS (as do the REDIS_TLS_* files) for every node.
    redis_mode: Mode = "standalone"
    redis_sentinels: Addrs = ""
    redis_sentinel_master: MasterName = "mymaster"
    redis_cluster_nodes: Addrs = ""
    redis_tls_ca: TlsFile = None
    redis_tls_cert: TlsFile = None
    redis_tls_key: TlsFile = None
    # After each commit, WAIT for this many replicas (sentinel: a failover then loses no commit
    # acknowledged to the feed); 0 does not wait. REDIS_WAIT_TIMEOUT_MS bounds each wait.
    redis_wait_replicas: Replicas = 0
    redis_wait_timeout_ms: Count = 1000
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
    smarttrade_data_dir: DataDir = _default_data_dir()
    smarttrade_maxmemory: MemorySize = "512mb"
    # Seconds the ingest engine waits for room on a Redis that refuses writes (full), then exit 2.
    smarttrade_full_wait: WaitSeconds = 60.0
    # The ingest lease's TTL (docs/ingest.md "Several ingesters"): renewed every third of it; a
    # killed ingester's source (or symbols) can be taken over this long after.
    smarttrade_ingest_lease_s: LeaseSeconds = INGEST_LEASE_TTL
    # Extra instruments, ROOT:TICK:QTY_DECIMALS[:PRICE_SCALE][@ZONE[:SESSIONS]] comma-separated
    # (symbols.parse_spec); registered in Redis by the ingest that uses them.
    smarttrade_symbols: SymbolSpecs = ""
    # Order-flow analytics (docs/analytics.md): bars, per-bar footprints, indicators.
    smarttrade_analytics: bool = True
    smarttrade_timeframes: Timeframes = "1m,5m,15m"
    smarttrade_sessions: Sessions = DEFAULT_SESSIONS  # B3's, in America/Sao_Paulo
    smarttrade_imbalance_ratio: Ratio = 3.0
    smarttrade_imbalance_min_volume: Quantity = Decimal(5)  # in each instrument's own units
    smarttrade_stacked_levels: Count = 3
    smarttrade_value_area: Fraction = 0.70
    # Operations (docs/operations.md). Commands renamed or disabled in the server's redis.conf.
    redis_renamed_commands: RenamedCommands = ""
    smarttrade_backup_dir: Path | None = None  # default: DATA_DIR/backups
    smarttrade_backup_keep: Count = 7
    # The runbook's alert thresholds, each with a warning and a critical level.
    smarttrade_alert_memory_warn: MemoryLevel = "400mb"
    smarttrade_alert_memory_crit: MemoryLevel = "90%"
    smarttrade_alert_clients_warn: Count = 50
    smarttrade_alert_clients_crit: Count = 100
    smarttrade_alert_hit_rate_warn: Fraction = 0.80
    smarttrade_alert_hit_rate_crit: Fraction = 0.50
    smarttrade_alert_ops_warn: Count = 1000
    smarttrade_alert_ops_crit: Count = 50_000
    smarttrade_alert_backup_warn_hours: Hours = 26
    smarttrade_alert_backup_crit_hours: Hours = 50

    # Gateway (docs/gateway.md). Tokens are signed with this secret (HS256); the gateway refuses
    # to start without one, except in the demo, which makes its own.
    smarttrade_gateway_secret: GatewaySecret = None
    smarttrade_gateway_host: Host = "127.0.0.1"
    smarttrade_gateway_port: Port = 8000

    @model_validator(mode="after")
    def _levels_in_order(self) -> Settings:
        """A critical level the warning level cannot reach first would make the warning silent."""
        pairs = (
            ("clients", self.smarttrade_alert_clients_warn, self.smarttrade_alert_clients_crit, 1),
            ("ops", self.smarttrade_alert_ops_warn, self.smarttrade_alert_ops_crit, 1),
            ("backup", self.smarttrade_alert_backup_warn_hours, self.smarttrade_alert_backup_crit_hours, 1),
            ("hit_rate", self.smarttrade_alert_hit_rate_warn, self.smarttrade_alert_hit_rate_crit, -1),
        )
        for name, warn, crit, direction in pairs:
            if (crit - warn) * direction < 0:
                suffix = "_HOURS" if name == "backup" else ""
                word = "at least" if direction > 0 else "at most"
                warn_var = f"SMARTTRADE_ALERT_{name.upper()}_WARN{suffix}"
                raise SettingsError(
                    f"SMARTTRADE_ALERT_{name.upper()}_CRIT{suffix}",
                    f"must be {word} the warning level, {warn_var} ({warn:g})",
                )
        warn_mem, crit_mem = self.smarttrade_alert_memory_warn, self.smarttrade_alert_memory_crit
        if warn_mem.endswith("%") == crit_mem.endswith("%"):  # a size and a share compare on a server
            as_number = (lambda t: int(t[:-1])) if warn_mem.endswith("%") else memory_bytes
            if as_number(crit_mem) < as_number(warn_mem):
                raise SettingsError(
                    "SMARTTRADE_ALERT_MEMORY_CRIT",
                    f"must be at least the warning level, SMARTTRADE_ALERT_MEMORY_WARN ({warn_mem})",
                )
        return self

    @model_validator(mode="after")
    def _topology_complete(self) -> Settings:
        """Each mode's own settings are there, so a typo fails here, not at the first failover."""
        if self.redis_mode == "sentinel" and not self.redis_sentinels:
            raise SettingsError(
                "REDIS_SENTINELS", "must list the sentinels (host:port,...) when REDIS_MODE=sentinel"
            )
        if self.redis_mode == "cluster" and not (self.redis_cluster_nodes or self.redis_url):
            raise SettingsError(
                "REDIS_CLUSTER_NODES", "must list seed nodes (host:port,...) when REDIS_MODE=cluster"
            )
        if self.redis_mode == "cluster":
            for spec in SPECS.values():
                name = f"redis_db_{spec.env.lower()}"
                if name in self.model_fields_set and getattr(self, name):
                    raise SettingsError(name.upper(), "a cluster has database 0 only: leave it unset or 0")
        files = self.redis_tls_ca or self.redis_tls_cert
        if files and self.redis_mode == "standalone" and (self.redis_url or "").startswith("redis://"):
            raise SettingsError(
                "REDIS_URL", "is redis:// (plain) but REDIS_TLS_* is set: use rediss:// for TLS"
            )
        if (self.redis_tls_cert is None) != (self.redis_tls_key is None):
            missing = "REDIS_TLS_KEY" if self.redis_tls_key is None else "REDIS_TLS_CERT"
            raise SettingsError(missing, "a client certificate needs both REDIS_TLS_CERT and REDIS_TLS_KEY")
        return self

    @property
    def tls(self) -> bool:
        """TLS to every node: a rediss:// REDIS_URL or any REDIS_TLS_* file."""
        return bool(
            (self.redis_url or "").startswith("rediss://") or self.redis_tls_ca or self.redis_tls_cert
        )

    @property
    def backup_dir(self) -> Path:
        return self.smarttrade_backup_dir or self.smarttrade_data_dir / "backups"

    def renamed(self) -> dict[str, str]:
        """Upper-case command -> its name on the server ("" when disabled)."""
        pairs = (i.partition("=") for i in self.redis_renamed_commands.split(",") if i.strip())
        return {name.strip().upper(): new.strip() for name, _, new in pairs}

    def db(self, store: Store | StoreSpec) -> int:
        """The store's database; every store is in database 0 on a cluster (its only one)."""
        if self.redis_mode == "cluster":
            return 0
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
