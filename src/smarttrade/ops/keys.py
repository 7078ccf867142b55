"""Key browsing, TTL reports, memory estimates, clean-up and flush, one store at a time.

Everything walks the keyspace with SCAN and a COUNT (never KEYS) and touches only keys of the
store's families (keyspace.FAMILIES), so a database shared with someone else's data is safe.
"""

from __future__ import annotations

import bisect
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import redis.asyncio as aioredis
import redis.exceptions as rexc

from smarttrade.keyspace import FAMILIES, SPECS, KeyFamily, Store, current_layout, families, family_of
from smarttrade.ops.server import Admin, CommandUnavailable
from smarttrade.redis.connections import redis_errors
from smarttrade.redis.scripts import EXPIRE_IF_NONE
from smarttrade.settings import Settings

SCAN_COUNT = 1000
# TTL histogram buckets: upper bounds in seconds.
TTL_BUCKETS = (10, 60, 300, 600, 1800, 3600, 86_400)
MAX_LISTED = 20  # keys named in a report


def bucket_label(i: int) -> str:
    def human(s: int) -> str:
        for size, unit in ((86_400, "d"), (3600, "h"), (60, "min")):
            if s >= size:
                return f"{s // size} {unit}"
        return f"{s} s"

    if i == len(TTL_BUCKETS):
        return f"> {human(TTL_BUCKETS[-1])}"
    low = 0 if i == 0 else TTL_BUCKETS[i - 1]
    return f"{human(low) if low else '0'} - {human(TTL_BUCKETS[i])}"


# One client, or several that together hold the store (each primary of a cluster): every walk
# goes through each in turn, and per-key commands go to the node the key came from.
Clients = aioredis.Redis | Sequence[aioredis.Redis]


def each(clients: Clients) -> list[aioredis.Redis]:
    return [clients] if isinstance(clients, aioredis.Redis) else list(clients)


async def scan_each(
    clients: Clients, url: str, store: Store
) -> AsyncIterator[tuple[aioredis.Redis, list[bytes]]]:
    """(the node, the store's keys on one of its SCAN pages), over every node in turn."""
    for client in each(clients):
        async for _cursor, page in scan_store(client, url, store):
            yield client, page


def _unlink_args(keys: list[bytes]) -> list[list[bytes]]:
    """UNLINK argument lists: one for all keys, or one per key in the cluster layout (the keys
    of one node page span slots, and a multi-key command must stay in one)."""
    return [[k] for k in keys] if current_layout().hash_tags else [keys]


def _text(key: bytes) -> str:
    return key.decode(errors="surrogateescape")


async def scan_store(
    client: aioredis.Redis,
    url: str,
    store: Store,
    pattern: str | None = None,
    cursor: int = 0,
    count: int = SCAN_COUNT,
) -> AsyncIterator[tuple[int, list[bytes]]]:
    """Pages of (next cursor, the store's keys on this page); the cursor is 0 after the last."""
    # The same test as family_of(key, store) is not None, on bytes: a 100k-key listing spends no
    # time decoding keys it only filters.
    ours = tuple(f"{fam.prefix}:".encode() for fam in families(store))
    with redis_errors(url):
        while True:
            cursor, page = await client.scan(cursor, match=pattern, count=count)
            yield cursor, [k for k in page if k.startswith(ours)]
            if cursor == 0:
                return


def family_for_key(key: str) -> KeyFamily | None:
    """The family a key belongs to, whatever its store (longest prefix first), or None."""
    for fam in sorted(FAMILIES, key=lambda f: -len(f.prefix)):
        if key.startswith(fam.prefix + ":"):
            return fam
    return None


def _tolerant(raw: bytes) -> Any:
    """JSON when it parses, else the text: a read never fails on what someone stored."""
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return _text(raw)


@dataclass(frozen=True, slots=True)
class RawValue:
    key: str
    type: str  # Redis TYPE: string, hash, zset, stream, list, set; "none" when missing
    ttl: int  # seconds; -1 none, -2 missing
    length: int  # entries, members or fields (1 for a string)
    value: Any  # builtins; a collection holds at most ``count`` items (the newest, for streams)


async def read_any(client: aioredis.Redis, url: str, key: str, count: int) -> RawValue:
    """Read any key of ours by its type: the families `keys` lists beyond the contract's strings.

    Strings and hash fields decode as JSON when they parse; a stream gives its newest ``count``
    entries (oldest first), a sorted set its first ``count`` members with scores, ascending.
    """
    with redis_errors(url, key):
        pipe = client.pipeline(transaction=False)
        pipe.type(key)
        pipe.ttl(key)
        kind_raw, ttl = await pipe.execute()
        kind = kind_raw.decode() if isinstance(kind_raw, bytes) else str(kind_raw)
        value: Any = None
        length = 0
        if kind == "string":
            raw = await client.get(key)
            value, length = (None, 0) if raw is None else (_tolerant(raw), 1)
        elif kind == "hash":
            fields = await client.hgetall(key)
            value = {_text(k): _tolerant(v) for k, v in sorted(fields.items())}
            length = len(value)
        elif kind == "zset":
            length = int(await client.zcard(key))
            members = await client.zrange(key, 0, count - 1, withscores=True)
            value = [{"member": _text(m), "score": s} for m, s in members]
        elif kind == "stream":
            length = int(await client.xlen(key))
            entries = await client.xrevrange(key, count=count)
            value = [
                {"id": _text(i), "fields": {_text(k): _tolerant(v) for k, v in f.items()}}
                for i, f in reversed(entries)
            ]
        elif kind == "list":
            length = int(await client.llen(key))
            value = [_tolerant(v) for v in await client.lrange(key, 0, count - 1)]
        elif kind == "set":
            length = int(await client.scard(key))
            value = sorted(_text(m) for m in (await client.srandmember(key, count) or []))
    return RawValue(key, kind, int(ttl), length, value)


@dataclass(frozen=True, slots=True)
class KeyRow:
    key: str
    type: str
    ttl: int  # seconds; -1 none


@dataclass
class KeyPage:
    flat: list[Any]  # [key, type, ttl, key, type, ttl, ...] as Redis replied (bytes, int)
    cursor: int  # 0: the scan is complete; else pass it back to continue

    def __len__(self) -> int:
        return len(self.flat) // 3

    @property
    def rows(self) -> list[KeyRow]:
        return _rows(self.flat)

    def tsv(self) -> bytes:
        """KEY<Tab>TYPE<Tab>TTL lines (TTL ``none`` when there is none), straight from the reply."""
        f = self.flat
        return b"".join(
            b"%s\t%s\t%s\n" % (f[i], _bytes(f[i + 1]), b"none" if f[i + 2] == -1 else b"%d" % f[i + 2])
            for i in range(0, len(f), 3)
        )


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


# One SCAN page with the type and TTL of each of the store's keys on it, in one command: 100k
# keys cost ~100 small round trips and flat replies, where a pipeline costs a Python command
# object per key (20 s for 100k). ARGV: cursor, COUNT, MATCH pattern or '', the store's prefixes.
SCAN_PAGE = """
local args = {'SCAN', ARGV[1], 'COUNT', ARGV[2]}
if ARGV[3] ~= '' then
  args[5] = 'MATCH'
  args[6] = ARGV[3]
end
local reply = redis.call(unpack(args))
local out = {reply[1]}
for _, key in ipairs(reply[2]) do
  for i = 4, #ARGV do
    if string.sub(key, 1, #ARGV[i]) == ARGV[i] then
      out[#out + 1] = key
      out[#out + 1] = redis.call('TYPE', key).ok
      out[#out + 1] = redis.call('TTL', key)
      break
    end
  end
end
return out
"""


def _rows(flat: list[Any]) -> list[KeyRow]:
    """[key, type, ttl, key, type, ttl, ...] as rows."""
    rows = []
    for i in range(0, len(flat), 3):
        kind = flat[i + 1]
        rows.append(
            KeyRow(_text(flat[i]), kind.decode() if isinstance(kind, bytes) else str(kind), int(flat[i + 2]))
        )
    return rows


async def _pages_by_pipeline(
    client: aioredis.Redis, url: str, store: Store, pattern: str | None, cursor: int, count: int
) -> AsyncIterator[KeyPage]:
    """The same pages for a user who may not run scripts: SCAN, then TYPE+TTL per key."""
    async for page_cursor, keys in scan_store(client, url, store, pattern, cursor, count):
        flat: list[Any] = []
        if keys:
            with redis_errors(url):
                pipe = client.pipeline(transaction=False)
                for key in keys:
                    pipe.type(key)
                    pipe.ttl(key)
                replies = await pipe.execute()
            for i, key in enumerate(keys):
                flat += [key, replies[2 * i], replies[2 * i + 1]]
        yield KeyPage(flat, page_cursor)


async def _pages(
    client: aioredis.Redis, url: str, store: Store, pattern: str | None, cursor: int, count: int
) -> AsyncIterator[KeyPage]:
    script = client.register_script(SCAN_PAGE)
    prefixes = [f"{fam.prefix}:" for fam in families(store)]
    while True:
        try:
            with redis_errors(url):
                flat = await script(args=[cursor, count, pattern or "", *prefixes])
        except rexc.ResponseError as exc:  # scripts denied to this user: the slower way
            if not (isinstance(exc, rexc.NoPermissionError) or "no permissions" in str(exc)):
                raise
            async for page in _pages_by_pipeline(client, url, store, pattern, cursor, count):
                yield page
            return
        cursor = int(flat[0])
        yield KeyPage(flat[1:], cursor)
        if cursor == 0:
            return


async def browse_pages(
    clients: Clients, url: str, store: Store, pattern: str | None, limit: int, cursor: int = 0
) -> AsyncIterator[KeyPage]:
    """The store's keys with type and TTL, one SCAN page at a time, until about ``limit`` keys.

    Each page's ``cursor`` continues after it (0 after the last). A page is yielded whole, never
    cut, so a listing resumed from the last cursor misses nothing; memory stays one page. Over
    N nodes the cursor is ``node cursor * N + node index`` (one server: Redis's own cursor).
    """
    nodes = each(clients)
    n = len(nodes)
    listed = 0
    count = min(max(limit, 10), SCAN_COUNT)  # COUNT near the limit keeps pages near it
    for index in range(cursor % n, n):
        start = cursor // n if index == cursor % n else 0
        async for page in _pages(nodes[index], url, store, pattern, start, count):
            listed += len(page)
            if page.cursor:
                page.cursor = page.cursor * n + index
            elif index + 1 < n:
                page.cursor = index + 1  # the next node, from its start
            yield page
            if listed >= limit:
                return


async def browse(
    client: Clients, url: str, store: Store, pattern: str | None, limit: int, cursor: int = 0
) -> KeyPage:
    """``browse_pages`` gathered into one page (small listings)."""
    flat: list[Any] = []
    next_cursor = 0
    async for page in browse_pages(client, url, store, pattern, limit, cursor):
        flat += page.flat
        next_cursor = page.cursor
    return KeyPage(flat, next_cursor)


async def _ttls(client: aioredis.Redis, url: str, keys: list[bytes]) -> list[int]:
    """TTL of each key on a page, in one round trip."""
    with redis_errors(url):
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.ttl(key)
        return await pipe.execute()


async def count_keys(clients: Clients, url: str, store: Store) -> tuple[int, int]:
    """(keys, expiring) of one store, told apart by prefix: for a database it shares with other
    stores, where INFO keyspace can only count them all together."""
    total = expiring = 0
    async for client, page in scan_each(clients, url, store):
        if page:
            ttls = [t for t in await _ttls(client, url, page) if t != -2]  # -2: gone meanwhile
            total += len(ttls)
            expiring += sum(1 for t in ttls if t >= 0)
    return total, expiring


@dataclass
class TtlReport:
    store: Store
    keys: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(TTL_BUCKETS) + 1))
    persistent: int = 0  # no TTL, on purpose (settings, checkpoints)
    missing: int = 0  # no TTL but should have one
    missing_keys: list[str] = field(default_factory=list)
    by_family: dict[str, int] = field(default_factory=dict)


async def ttl_report(
    clients: Clients,
    url: str,
    store: Store,
    limit: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> TtlReport:
    """TTL histogram of the store's keys (all of them, or the first ``limit`` as a sample)."""
    report = TtlReport(store)
    async for client, keys in scan_each(clients, url, store):
        if not keys:
            continue
        if limit is not None:
            keys = keys[: limit - report.keys]  # a sample of ``limit`` keys, not whole pages
        ttls = await _ttls(client, url, keys)
        for key, ttl in zip(keys, ttls, strict=True):
            if ttl == -2:
                continue  # expired between SCAN and TTL
            text = _text(key)
            fam = family_of(text, store)
            assert fam is not None
            report.keys += 1
            report.by_family[fam.prefix] = report.by_family.get(fam.prefix, 0) + 1
            if ttl == -1:
                if fam.must_expire:
                    report.missing += 1
                    if len(report.missing_keys) < MAX_LISTED:
                        report.missing_keys.append(text)
                else:
                    report.persistent += 1
            else:
                report.buckets[bisect.bisect_left(TTL_BUCKETS, ttl)] += 1
        if progress:
            progress(report.keys)
        if limit is not None and report.keys >= limit:
            break
    return report


@dataclass(frozen=True, slots=True)
class MemoryEstimate:
    store: Store
    sampled: int
    sample_bytes: int
    db_keys: int  # keys in the store's database (INFO keyspace)
    share: float  # of the sampled db keys, the part that belongs to this store

    @property
    def estimate_bytes(self) -> int:
        if not self.sampled:
            return 0
        return int(self.sample_bytes / self.sampled * self.db_keys * self.share)


async def memory_estimate(
    admin: Admin, clients: Clients, store: Store, db_keys: int, sample: int = 200
) -> MemoryEstimate | None:
    """MEMORY USAGE over a SCAN sample, scaled to the db's key count: an estimate, not a census.
    Several nodes (a cluster's primaries) give an equal part of the sample each.

    None when MEMORY USAGE is denied to this user.
    """
    nodes = each(clients)
    parts = [await _node_memory(admin, c, store, -(-sample // len(nodes))) for c in nodes]
    if any(p is None for p in parts):
        return None
    seen, ours, sampled, total = (sum(p[i] for p in parts if p) for i in range(4))
    share = ours / seen if seen else 0.0
    return MemoryEstimate(store, sampled, total, db_keys, share)


async def _node_memory(
    admin: Admin, client: aioredis.Redis, store: Store, sample: int
) -> tuple[int, int, int, int] | None:
    """(keys seen, of them the store's, sampled, their bytes) on one node; None when denied."""
    seen = ours = total = 0
    cursor = 0
    keys: list[bytes] = []
    with redis_errors(admin.url):
        while len(keys) < sample:
            cursor, page = await client.scan(cursor, count=SCAN_COUNT)
            seen += len(page)
            mine = [k for k in page if family_of(_text(k), store)]
            ours += len(mine)
            keys.extend(mine[: sample - len(keys)])
            if cursor == 0:
                break
        if keys:
            try:
                pipe = client.pipeline(transaction=False)
                for key in keys:
                    pipe.memory_usage(key, samples=0)
                sizes = await pipe.execute()
            except rexc.ResponseError as exc:  # denied (NOPERM) or renamed away: no estimate
                if (
                    isinstance(exc, rexc.NoPermissionError)
                    or "no permissions" in str(exc)
                    or "unknown command" in str(exc)
                ):
                    return None
                raise
            total = sum(int(s or 0) for s in sizes)
    return seen, ours, len(keys), total


@dataclass(frozen=True, slots=True)
class StoreSample:
    memory: MemoryEstimate | None
    ttl: TtlReport

    def median_ttl_label(self) -> str:
        """The TTL bucket holding the middle key of the sample, or a note when none expire."""
        counted = sum(self.ttl.buckets)
        if not counted:
            return "none expire" if self.ttl.keys else "-"
        running = 0
        for i, n in enumerate(self.ttl.buckets):
            running += n
            if running * 2 >= counted:
                return bucket_label(i)
        return bucket_label(len(self.ttl.buckets) - 1)

    def as_json(self) -> dict[str, object]:
        labels = [bucket_label(i) for i in range(len(self.ttl.buckets))]
        return {
            "sampled": self.ttl.keys,
            "memory_estimate_bytes": self.memory.estimate_bytes if self.memory else None,
            "ttl_sample": {
                **dict(zip(labels, self.ttl.buckets, strict=True)),
                "none (permanent)": self.ttl.persistent,
                "none (should expire)": self.ttl.missing,
            },
        }


async def store_sample(admin: Admin, client: Clients, store: Store, db_keys: int, size: int) -> StoreSample:
    memory = await memory_estimate(admin, client, store, db_keys, size)
    ttl = await ttl_report(client, admin.url, store, limit=size)
    return StoreSample(memory, ttl)


# -- maintenance ---------------------------------------------------------------------------------


@dataclass
class CleanupResult:
    store: Store
    scanned: int = 0
    missing: int = 0
    fixed: int = 0
    examples: list[str] = field(default_factory=list)


def family_ttl(fam: KeyFamily, settings: Settings) -> int:
    ttl = fam.ttl or settings.ttl(fam.store)
    assert ttl is not None, fam
    return ttl


async def cleanup(clients: Clients, url: str, settings: Settings, store: Store, apply: bool) -> CleanupResult:
    """Find the store's keys that must expire but have no TTL; with ``apply`` give them one."""
    result = CleanupResult(store)
    async for client, keys in scan_each(clients, url, store):
        script = client.register_script(EXPIRE_IF_NONE)
        if not keys:
            continue
        ttls = await _ttls(client, url, keys)
        result.scanned += len(keys)
        for key, ttl in zip(keys, ttls, strict=True):
            fam = family_of(_text(key), store)
            if ttl != -1 or fam is None or not fam.must_expire:
                continue
            result.missing += 1
            if len(result.examples) < MAX_LISTED:
                result.examples.append(_text(key))
            if apply:
                with redis_errors(url, _text(key)):
                    result.fixed += int(await script(keys=[key], args=[family_ttl(fam, settings)]))
    return result


@dataclass(frozen=True, slots=True)
class FlushResult:
    store: Store
    deleted: int
    how: str  # "FLUSHDB" or "SCAN+UNLINK"
    note: str = ""


async def flush_store(
    admin: Admin,
    clients: Clients,
    store: Store,
    use_flushdb: bool,
    progress: Callable[[int], None] | None = None,
) -> FlushResult:
    """Delete the store's keys: SCAN+UNLINK of its families, or FLUSHDB when asked and allowed.

    Keys kept in the store's db that are permanent on purpose (ingest checkpoints and source
    records, docs/keyspace.md) are never flushed with it: losing them would make the next ingest
    count every trade again in the other stores."""
    note = ""
    if use_flushdb:
        # FLUSHDB only when every key in the db is one flush deletes: never someone else's data.
        ours = total = 0
        async for _client, page in _flushable_pages(clients, admin.url, store):
            ours += len(page)
        with redis_errors(admin.url):
            for client in each(clients):
                total += int(await client.dbsize())
        if total != ours:
            foreign = total - ours
            note = (
                f"the db holds {foreign:,} keys that are not {store.value} keys or are permanent "
                "(ingest checkpoints); used SCAN+UNLINK instead"
            )
        else:
            try:
                # The admin's client may be on another db: FLUSHDB must run on this store's
                # connection, and on each primary of a cluster.
                for client in each(clients):
                    await admin.on(client).call("FLUSHDB", "ASYNC")
                return FlushResult(store, total, "FLUSHDB")
            except CommandUnavailable as exc:
                note = f"{exc}; used SCAN+UNLINK instead"
    deleted = 0
    async for client, keys in _flushable_pages(clients, admin.url, store):
        if keys:
            with redis_errors(admin.url):
                pipe = client.pipeline(transaction=False)
                for args in _unlink_args(keys):
                    pipe.unlink(*args)
                deleted += sum(int(n) for n in await pipe.execute())
            if progress:
                progress(deleted)
    return FlushResult(store, deleted, "SCAN+UNLINK", note)


async def _flushable_pages(
    clients: Clients, url: str, store: Store
) -> AsyncIterator[tuple[aioredis.Redis, list[bytes]]]:
    """Pages of the keys a flush of ``store`` deletes: its own prefix, the extra families in its
    db that must expire, and those derived from its own keys (never the other permanent ones)."""
    own = SPECS[store].prefix
    async for client, page in scan_each(clients, url, store):
        yield client, [k for k in page if _flushable(family_of(_text(k), store), own)]


def _flushable(fam: KeyFamily | None, own: str) -> bool:
    return fam is not None and (fam.must_expire or fam.derived or fam.prefix == own)
