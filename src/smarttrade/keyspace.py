"""The wire contract's six stores: database, key pattern and TTL, and every extra key we add.

This module is the only place that spells a key prefix or a default TTL. Extra keys are listed in
docs/keyspace.md with their type and bound.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from smarttrade.symbols import check_symbol


class Store(StrEnum):
    QUOTES = "quotes"
    ORDERFLOW = "orderflow"
    FOOTPRINT = "footprint"
    CALC = "calc"
    SESSIONS = "sessions"
    CONFIG = "config"


@dataclass(frozen=True, slots=True)
class StoreSpec:
    store: Store
    title: str
    prefix: str  # first key segment, without the colon
    pattern: str  # the contract's key pattern, for humans
    default_db: int
    default_ttl: int | None  # None: permanent
    env: str  # suffix of REDIS_DB_* / REDIS_TTL_*

    @property
    def market_data(self) -> bool:
        """Stores whose keys must expire (evictable under volatile-lru)."""
        return self.default_ttl is not None


SPECS: dict[Store, StoreSpec] = {
    s.store: s
    for s in (
        StoreSpec(Store.QUOTES, "quotes", "quote", "quote:SYMBOL:EPOCH_S", 0, 60, "QUOTES"),
        StoreSpec(
            Store.ORDERFLOW,
            "order flow",
            "orderflow",
            "orderflow:SYMBOL:EPOCH_S",
            1,
            300,
            "ORDERFLOW",
        ),
        StoreSpec(Store.FOOTPRINT, "footprint", "footprint", "footprint:SYMBOL:LEVEL", 2, 600, "FOOTPRINT"),
        StoreSpec(Store.CALC, "calculations", "calc", "calc:SYMBOL:INDICATOR", 3, 1800, "CALC"),
        StoreSpec(Store.SESSIONS, "sessions", "session", "session:USER_ID", 4, 3600, "SESSIONS"),
        StoreSpec(Store.CONFIG, "user settings", "config", "config:USER_ID:SETTING", 5, None, "CONFIG"),
    )
}
BY_PREFIX: dict[str, StoreSpec] = {s.prefix: s for s in SPECS.values()}

# Extra keys (docs/keyspace.md). The latest-quote index lives beside the quotes, in the quotes db,
# under a prefix that `quote:*` does not match, so contract readers never trip over it.
LAST_QUOTE_PREFIX = "lastquote"
LAST_QUOTE_TTL = 86_400  # a quiet market still shows its last price for a trading day

# Ingest (docs/keyspace.md): a checkpoint per (source, symbol) in the quotes db, never evicted
# (no TTL; one per source and symbol; `smarttrade ingest --reset` removes them); a trade stream per
# symbol in the order-flow db, one entry per commit, trimmed to the order-flow TTL's window
# (XADD MINID) and expiring with it when idle; a pub/sub channel per symbol.
CHECKPOINT_PREFIX = "ingest:checkpoint"
# A record per file source (docs/ingest.md "Which source a file is"), in the quotes db, permanent
# like the checkpoints (one small hash per source; `ingest --reset` rewrites it): its format, how
# many bytes were ingested and their hash, and a short head hash to find it by content.
SOURCE_PREFIX = "ingest:source"
# The ingest lease (docs/ingest.md "Several ingesters"), in the quotes db: one hash per source, a
# field per running ingester (its symbols or *, host, pid, expiry by server time); the key's TTL is
# its longest holder's, so a killed ingester's claim is gone after SMARTTRADE_INGEST_LEASE_S.
LEASE_PREFIX = "ingest:lease"
INGEST_LEASE_TTL = 15  # seconds: SMARTTRADE_INGEST_LEASE_S's default
# Instruments (docs/keyspace.md): one hash ROOT -> declaration in the quotes db, permanent on
# purpose (stored data is read with it); written by an ingest and `smarttrade symbols add`.
INSTRUMENTS_PREFIX = "instruments"
INSTRUMENTS_KEY = f"{INSTRUMENTS_PREFIX}:registry"
STREAM_PREFIX = "stream:trades"
# The stream's epoch, beside it with its TTL: a token the commit creates when it is missing. A new
# epoch means the stream's history was lost (a Redis restarted empty, an idle stream expired, a
# symbol started over), so a gateway client's offset from before cannot be resumed from.
STREAM_EPOCH_PREFIX = "stream:epoch"
CHANNEL_PREFIX = "trades"
# Analytics (docs/keyspace.md): a hash per bar in the order-flow db, its footprint (a hash of
# b:LEVEL / s:LEVEL volumes) in the footprint db, and a sorted set listing a symbol's bars per
# timeframe; all expire (analytics.bars.BAR_TTL) and the list is trimmed.
BAR_PREFIX = "bar"
BAR_INDEX_PREFIX = "bars"
BAR_FOOTPRINT_PREFIX = "fpbar"
BAR_TTL = 2 * 86_400  # bars and their footprints
# Operations (docs/operations.md), in the quotes db: per-store hit counters that our processes
# publish, running ingesters' figures, and the last alerts check. All expire.
OPS_PREFIX = "ops"
STORE_HITS_KEY = f"{OPS_PREFIX}:storehits"  # hash STORE:hits / STORE:misses
INGEST_STATS_PREFIX = f"{OPS_PREFIX}:ingest"  # hash per running ingester source
ALERTS_KEY = f"{OPS_PREFIX}:alerts"  # hash: the counters the last `smarttrade alerts` saw
SCRIPT_CALLS_KEY = f"{OPS_PREFIX}:scriptcalls"  # hash `calls`: commands our Lua commits ran
OPS_TTL = 7 * 86_400
INGEST_STATS_TTL = 30  # gone half a minute after its ingester stops
# Gateway presence (docs/keyspace.md "Gateway"), in the sessions db: per user a hash of its live
# sockets beside its contract session key; per gateway a liveness key with a short TTL and a set of
# the sockets it holds, so a gateway killed with -9 is cleaned up when its liveness key expires.
# The probe channel carries one canary per /healthz check (pub/sub, no key).
SOCKETS_PREFIX = "sockets"
GATEWAY_ALIVE_PREFIX = "gateway:alive"
GATEWAY_SOCKETS_PREFIX = "gateway:sockets"
GATEWAY_ALIVE_TTL = 15  # seconds; renewed every GATEWAY_ALIVE_RENEW_S
GATEWAY_ALIVE_RENEW_S = 5.0
GATEWAY_PROBE_PREFIX = "gateway:probe"
SOURCE_RE = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
# Price alerts (docs/alerts.md), in the config db beside the config:USER:alerts keys they are
# derived from, so one script writes both. Per symbol (its slot in cluster): the armed and
# waiting-to-re-arm sorted sets, a meta hash (user -> rule and state) and the last checked stream
# offset; one member per user per symbol. The set of symbols with alerts, a fired history per user
# (trimmed, expiring), the fired channel every gateway hears and a channel naming changed symbols.
ALERT_INDEX_PREFIX = "alertidx"
ALERT_INDEX_PARTS = ("above", "below", "rearm_above", "rearm_below", "meta", "last")
ALERT_SYMBOLS_KEY = f"{ALERT_INDEX_PREFIX}:symbols"  # beside the index, in its family (stats, flush)
ALERT_HISTORY_PREFIX = "alertfired"
ALERT_CHANNEL = "alertfired"
ALERT_CHANGES_CHANNEL = "alertidx:changed"
ALERT_HISTORY_LEN = 100  # fired records kept per user
ALERT_HISTORY_TTL = 30 * 86_400  # renewed by each fire
ALERT_LAST_TTL = 7 * 86_400  # the last checked offset, renewed by each check


@dataclass(frozen=True, slots=True)
class KeyLayout:
    """How a key spells its symbol or user (docs/keyspace.md, "Two layouts").

    Standalone is the contract, byte for byte (``quote:DOL:EPOCH``). Cluster writes the symbol or
    user as a hash tag (``quote:{DOL}:EPOCH``, ``session:{user123}``): Redis Cluster hashes only the
    tag, so every key of one symbol's commit (and of one user) lands in one slot and the Lua commit
    runs there unchanged. Prefixes are the same, so ``PREFIX:*`` SCAN patterns match both.
    """

    name: str
    hash_tags: bool

    def tag(self, ident: str) -> str:
        return f"{{{ident}}}" if self.hash_tags else ident

    def untag(self, segment: str) -> str:
        """The symbol or user of a key segment; ValueError for a cluster key without its tag."""
        if not self.hash_tags:
            return segment
        if len(segment) < 3 or segment[0] != "{" or segment[-1] != "}":
            raise ValueError(
                f"{segment!r} is not a hash tag ({{SYMBOL}} or {{USER_ID}}) of the cluster layout"
            )
        return segment[1:-1]


STANDALONE = KeyLayout("standalone", hash_tags=False)
CLUSTER = KeyLayout("cluster", hash_tags=True)
LAYOUTS: dict[str, KeyLayout] = {STANDALONE.name: STANDALONE, "sentinel": STANDALONE, CLUSTER.name: CLUSTER}
_layout = STANDALONE


def layout_for(mode: str) -> KeyLayout:
    """The key layout of a topology (REDIS_MODE): cluster uses hash tags, the others the contract's."""
    try:
        return LAYOUTS[mode]
    except KeyError:
        raise ValueError(f"REDIS_MODE: {mode!r} is not one of {', '.join(LAYOUTS)}") from None


def use_layout(layout: KeyLayout) -> KeyLayout:
    """Make ``layout`` the one every key function spells (the topology seam calls this once at
    start-up, from settings); returns the previous one, so a test can put it back."""
    global _layout
    previous, _layout = _layout, layout
    return previous


def current_layout() -> KeyLayout:
    return _layout


@dataclass(frozen=True, slots=True)
class KeyFamily:
    """Keys sharing a prefix: which store's database holds them and how long they should live.

    ``ttl`` None with ``must_expire`` means the store's TTL setting; ``must_expire`` False marks
    keys that are permanent on purpose (user settings, ingest checkpoints, instruments).
    ``derived`` marks permanent keys built from the store's own (the alert index from
    config:USER:alerts): flushing the store takes them too, or they would index nothing.
    """

    prefix: str
    store: Store
    must_expire: bool
    ttl: int | None = None
    derived: bool = False


FAMILIES: tuple[KeyFamily, ...] = (
    *(KeyFamily(s.prefix, s.store, s.market_data) for s in SPECS.values()),
    KeyFamily(LAST_QUOTE_PREFIX, Store.QUOTES, True, LAST_QUOTE_TTL),
    KeyFamily(CHECKPOINT_PREFIX, Store.QUOTES, False),
    KeyFamily(SOURCE_PREFIX, Store.QUOTES, False),
    KeyFamily(LEASE_PREFIX, Store.QUOTES, True, INGEST_LEASE_TTL),
    KeyFamily(INSTRUMENTS_PREFIX, Store.QUOTES, False),
    KeyFamily(OPS_PREFIX, Store.QUOTES, True, OPS_TTL),
    KeyFamily(STREAM_PREFIX, Store.ORDERFLOW, True),
    KeyFamily(STREAM_EPOCH_PREFIX, Store.ORDERFLOW, True),
    KeyFamily(BAR_PREFIX, Store.ORDERFLOW, True, BAR_TTL),
    KeyFamily(BAR_INDEX_PREFIX, Store.ORDERFLOW, True, BAR_TTL),
    KeyFamily(BAR_FOOTPRINT_PREFIX, Store.FOOTPRINT, True, BAR_TTL),
    KeyFamily(ALERT_INDEX_PREFIX, Store.CONFIG, False, derived=True),
    KeyFamily(ALERT_HISTORY_PREFIX, Store.CONFIG, True, ALERT_HISTORY_TTL),
    KeyFamily(SOCKETS_PREFIX, Store.SESSIONS, True),
    KeyFamily(GATEWAY_ALIVE_PREFIX, Store.SESSIONS, True, GATEWAY_ALIVE_TTL),
    KeyFamily(GATEWAY_SOCKETS_PREFIX, Store.SESSIONS, True),
)


def families(store: Store) -> list[KeyFamily]:
    """The store's own prefix first, then the extra keys kept in its database."""
    return [f for f in FAMILIES if f.store is store]


def family_of(key: str, store: Store) -> KeyFamily | None:
    """The family of ``key`` within ``store``'s database; None for a key that is not ours."""
    for fam in sorted(families(store), key=lambda f: -len(f.prefix)):  # ingest:checkpoint before ingest
        if key.startswith(fam.prefix + ":"):
            return fam
    return None


_GLOB_SPECIALS = "\\*?[]"


def glob_escape(text: str) -> str:
    """Escape a literal for a SCAN MATCH pattern."""
    return "".join("\\" + c if c in _GLOB_SPECIALS else c for c in text)


def quote_key(symbol: str, epoch_s: int) -> str:
    return f"quote:{_layout.tag(symbol)}:{int(epoch_s)}"


def last_quote_key(symbol: str) -> str:
    return f"{LAST_QUOTE_PREFIX}:{_layout.tag(symbol)}"


def orderflow_key(symbol: str, epoch_s: int) -> str:
    return f"orderflow:{_layout.tag(symbol)}:{int(epoch_s)}"


# A commit's many seconds at once: the keys above, their prefix spelt once (a call per key cost
# more than the rest of the commit's key work).
def quote_keys(symbol: str, seconds: Iterable[int]) -> list[str]:
    head = quote_key(symbol, 0)[:-1]
    return [head + str(s) for s in seconds]


def orderflow_keys(symbol: str, seconds: Iterable[int]) -> list[str]:
    head = orderflow_key(symbol, 0)[:-1]
    return [head + str(s) for s in seconds]


def footprint_key(symbol: str, level: int) -> str:
    return f"footprint:{_layout.tag(symbol)}:{int(level)}"


def calc_key(symbol: str, indicator: str) -> str:
    return f"calc:{_layout.tag(symbol)}:{indicator}"


def owner_prefix(store: Store, ident: str) -> str:
    """What every key of one symbol (or user) in a store starts with, ``calc:DOL:`` or
    ``calc:{DOL}:``: the literal before a SCAN pattern's ``*`` and what a key's name follows."""
    return f"{SPECS[store].prefix}:{_layout.tag(ident)}:"


def checkpoint_key(source: str, symbol: str) -> str:
    return f"{CHECKPOINT_PREFIX}:{source}:{_layout.tag(symbol)}"


def checkpoint_pattern(symbol: str) -> str:
    """SCAN MATCH for ``symbol``'s checkpoints of every source (hash-tagged in the cluster layout)."""
    return f"{CHECKPOINT_PREFIX}:*:{glob_escape(_layout.tag(symbol))}"


def script_calls_key(symbol: str) -> str:
    """Where a symbol's commit counts the commands it ran: the one SCRIPT_CALLS_KEY, or in the
    cluster layout one per symbol, in the slot of the commit's other keys."""
    return f"{SCRIPT_CALLS_KEY}:{{{symbol}}}" if _layout.hash_tags else SCRIPT_CALLS_KEY


def source_key(source: str) -> str:
    return f"{SOURCE_PREFIX}:{source}"


def lease_key(source: str) -> str:
    """The source's lease; hash-tagged by source in the cluster layout (one slot, one key)."""
    return f"{LEASE_PREFIX}:{_layout.tag(source)}"


def symbol_patterns(symbol: str) -> list[tuple[Store, str]]:
    """SCAN MATCH patterns of every key holding ``symbol``'s market data, bars, indicators and
    stream, and of its checkpoints (any source), with the store whose db holds them: what starting
    a symbol over deletes (stores.symbol_data)."""
    sym = glob_escape(_layout.tag(symbol))
    return [
        (Store.QUOTES, f"quote:{sym}:*"),
        (Store.QUOTES, f"{LAST_QUOTE_PREFIX}:{sym}"),
        (Store.QUOTES, checkpoint_pattern(symbol)),
        (Store.ORDERFLOW, f"orderflow:{sym}:*"),
        (Store.ORDERFLOW, f"{STREAM_PREFIX}:{sym}"),
        (Store.ORDERFLOW, f"{STREAM_EPOCH_PREFIX}:{sym}"),
        (Store.ORDERFLOW, f"{BAR_PREFIX}:{sym}:*"),
        (Store.ORDERFLOW, f"{BAR_INDEX_PREFIX}:{sym}:*"),
        (Store.FOOTPRINT, f"footprint:{sym}:*"),
        (Store.FOOTPRINT, f"{BAR_FOOTPRINT_PREFIX}:{sym}:*"),
        (Store.CALC, f"calc:{sym}:*"),
    ]


def trades_stream_key(symbol: str) -> str:
    return f"{STREAM_PREFIX}:{_layout.tag(symbol)}"


def stream_epoch_key(symbol: str) -> str:
    return f"{STREAM_EPOCH_PREFIX}:{_layout.tag(symbol)}"


def trades_channel(symbol: str) -> str:
    return f"{CHANNEL_PREFIX}:{_layout.tag(symbol)}"


def bar_key(symbol: str, timeframe: str, start: int) -> str:
    return f"{BAR_PREFIX}:{_layout.tag(symbol)}:{timeframe}:{start}"


def bar_index_key(symbol: str, timeframe: str) -> str:
    return f"{BAR_INDEX_PREFIX}:{_layout.tag(symbol)}:{timeframe}"


def bar_footprint_key(symbol: str, timeframe: str, start: int) -> str:
    return f"{BAR_FOOTPRINT_PREFIX}:{_layout.tag(symbol)}:{timeframe}:{start}"


def session_key(user_id: str) -> str:
    return f"session:{_layout.tag(user_id)}"


def sockets_key(user_id: str) -> str:
    """A user's live sockets (hash socket_id -> JSON), in the slot of its session key."""
    return f"{SOCKETS_PREFIX}:{_layout.tag(user_id)}"


def gateway_alive_key(gateway_id: str) -> str:
    return f"{GATEWAY_ALIVE_PREFIX}:{gateway_id}"


def gateway_sockets_key(gateway_id: str) -> str:
    return f"{GATEWAY_SOCKETS_PREFIX}:{gateway_id}"


def gateway_probe_channel(gateway_id: str) -> str:
    return f"{GATEWAY_PROBE_PREFIX}:{gateway_id}"


def trades_pattern() -> str:
    """The PSUBSCRIBE pattern of every symbol's trades channel (standalone and cluster)."""
    return f"{CHANNEL_PREFIX}:*"


def expired_channel(db: int) -> str:
    """Where Redis announces expired keys of database ``db`` (notify-keyspace-events Ex)."""
    return f"__keyevent@{db}__:expired"


def config_key(user_id: str, setting: str) -> str:
    return f"config:{_layout.tag(user_id)}:{setting}"


def alert_index_key(symbol: str, part: str) -> str:
    """One of a symbol's alert index keys (ALERT_INDEX_PARTS), all in the symbol's slot."""
    if part not in ALERT_INDEX_PARTS:
        raise ValueError(f"alert index part {part!r} is not one of {', '.join(ALERT_INDEX_PARTS)}")
    return f"{ALERT_INDEX_PREFIX}:{_layout.tag(symbol)}:{part}"


def alert_history_key(user_id: str) -> str:
    return f"{ALERT_HISTORY_PREFIX}:{_layout.tag(user_id)}"


def layout_pattern(spec: StoreSpec, layout: KeyLayout) -> str:
    """The store's key pattern as ``layout`` spells it (``quote:{SYMBOL}:EPOCH_S`` in cluster)."""
    prefix, _, rest = spec.pattern.partition(":")
    first, sep, tail = rest.partition(":")
    return f"{prefix}:{layout.tag(first)}{sep}{tail}"


@dataclass(frozen=True, slots=True)
class ParsedKey:
    spec: StoreSpec
    parts: tuple[str, ...]  # the segments after the prefix


def parse_key(key: str, layout: KeyLayout | None = None) -> ParsedKey:
    """Split a contract key into its store and segments (the symbol or user untagged, in the
    cluster layout); ValueError names what is wrong. ``layout``: the current one by default."""
    layout = layout or _layout
    prefix, _, rest = key.partition(":")
    spec = BY_PREFIX.get(prefix)
    if spec is None:
        known = ", ".join(f"{p}:" for p in BY_PREFIX)
        raise ValueError(f"{key!r} has no store prefix (expected one of {known})")
    want = spec.pattern.count(":")
    parts = tuple(rest.split(":", want - 1)) if rest else ()
    if len(parts) != want or not all(parts):
        raise ValueError(f"{key!r} does not match {layout_pattern(spec, layout)}")
    if layout.hash_tags:
        try:
            parts = (layout.untag(parts[0]), *parts[1:])
        except ValueError as exc:
            raise ValueError(f"{key!r}: {exc}") from None
    if spec.store in (Store.QUOTES, Store.ORDERFLOW, Store.FOOTPRINT, Store.CALC):
        check_symbol(parts[0])
    # digits exactly as written: "0203" would read quote:DOL:203, another key
    if spec.store in (Store.QUOTES, Store.ORDERFLOW, Store.FOOTPRINT) and not re.fullmatch(
        r"-?[1-9][0-9]*|0", parts[1]
    ):
        what = "LEVEL" if spec.store is Store.FOOTPRINT else "EPOCH_S"
        raise ValueError(f"{key!r}: {what} must be an integer without leading zeros")
    return ParsedKey(spec, parts)
