"""The ingest engine: feed -> bounded queue -> adaptive batches -> one atomic commit per symbol.

Batching adapts to load: the committer takes everything pending as soon as its previous commit
returns, so a lone trade reaches Redis within one round trip and a burst becomes one large batch.
The queue is bounded: when Redis lags, ``feed`` waits (backpressure) instead of growing memory.

Exactly once: every commit carries a per-(source, symbol) sequence number and the source ordinal
it covers, checked and recorded inside the script. A restarted run reads its checkpoints, re-reads
its input from the start to rebuild the normalizer's state, and commits only what comes after.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np
import redis.exceptions as rexc

from smarttrade.analytics.bars import Op, SymbolAnalytics
from smarttrade.analytics.calendar import calendar_for
from smarttrade.errors import OutOfMemory, RedisUnavailable, SmartTradeError, StayedFull, redact
from smarttrade.feeds.chunk import Chunk
from smarttrade.ingest.commit import Commit, Layout, SymbolSlice, build_commit
from smarttrade.ingest.route import RouteChanged, commit_wire
from smarttrade.keyspace import (
    CHECKPOINT_PREFIX,
    LAST_QUOTE_TTL,
    SPECS,
    Store,
    checkpoint_key,
    current_layout,
    glob_escape,
)
from smarttrade.redis.cancel import cancel_and_wait
from smarttrade.redis.connections import redis_errors
from smarttrade.redis.scripts import commit_script
from smarttrade.redis.topology import Topology
from smarttrade.settings import Settings
from smarttrade.symbols import SymbolSpec, spec_for
from smarttrade.timeframes import parse_timeframes

MAX_BATCH = 50_000  # trades per commit round: bounds how long one script holds Redis
MAX_PENDING = 400_000  # trades queued before the feed is made to wait
DEPTH = 2  # commit rounds on the wire at once
MAX_RETRY_S = 5.0  # the longest wait between resends while Redis is away
# A reshard answers TRYAGAIN or ASK at once and ends in seconds: resend often, not after 5 s
RESHARD_RETRY_S = 0.25


@dataclass
class Checkpoint:
    seq: int = 0
    ordinal: int = 0  # the symbol's last source line committed
    # how many source lines of the symbol up to ``ordinal`` were committed, and their
    # ordinal_digest; None on checkpoints written before these were kept
    count: int | None = None
    digest: int | None = None


@dataclass
class IngestStats:
    trades: int = 0  # committed by this run
    cancels: int = 0
    commits: int = 0  # script calls that applied
    skipped_commits: int = 0  # script calls whose seq was already applied
    resumed: int = 0  # records skipped because an earlier run committed them
    repaired: int = 0  # corrupt keys replaced
    missed_cancels: int = 0  # cancels whose trade was no longer in its bucket
    abandoned: int = 0  # trades a timed run gave up on (Redis could not take them in time)
    last_batch: int = 0
    max_batch: int = 0
    lag_ms: float = 0.0  # oldest trade of the last batch: accepted -> acknowledged
    waiting: str = ""  # why the committer is waiting, if it is
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


class Rewind(Exception):
    """Redis lost commits (restart without them): the run must resume from the checkpoints."""


class Engine:
    def __init__(
        self,
        topology: Topology,
        settings: Settings,
        source: str,
        on_wait: Callable[[str], None] = lambda _: None,
        max_batch: int = MAX_BATCH,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.topology = topology
        self.source = source
        self.on_wait = on_wait
        self.max_batch = max_batch
        self.max_pending = max_pending
        q, o, f = (SPECS[s] for s in (Store.QUOTES, Store.ORDERFLOW, Store.FOOTPRINT))
        self.layout = Layout(
            topology.commit_select(),
            settings.ttl(q) or 0,
            settings.ttl(o) or 0,
            settings.ttl(f) or 0,
            LAST_QUOTE_TTL,
        )
        self.redis = topology.client(Store.QUOTES)  # checkpoints; the commit SELECTs the others
        script = commit_script(topology.mode)
        # one connection, or one per cluster primary; each round ends with WAIT when asked for
        self.wire = commit_wire(
            topology, script, settings.redis_wait_replicas, settings.redis_wait_timeout_ms
        )
        self.settings = settings
        self.analytics_on = settings.smarttrade_analytics
        self._timeframes = parse_timeframes(settings.smarttrade_timeframes)
        self.analytics: dict[str, SymbolAnalytics] = {}
        # states read with the checkpoints: (forming bars and VWAP, indicator recursions)
        self._saved_analytics: dict[str, tuple[dict[str, Any], dict[str, Any] | None]] = {}
        self.checkpoints: dict[str, Checkpoint] = {}  # as acknowledged by Redis
        self._next_seq: dict[str, int] = {}  # the seq the next commit of a symbol is built with
        self._start_seq: dict[str, int] = {}  # checkpoints when this run began
        self.skip_committed = True  # drop trades at or below a checkpoint's ordinal (replays)
        self._inflight_count = 0
        self.stats = IngestStats()
        # Called when the queue runs dry: the live API hands over what it has gathered.
        self.refill: Callable[[], Chunk | None] | None = None
        self._pending: list[tuple[Chunk, float]] = []
        self._pending_count = 0
        self._wake = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self._closing = False
        self._error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None

    # -- checkpoints ------------------------------------------------------------------------

    async def load_checkpoints(self) -> dict[str, Checkpoint]:
        """Adopt this source's checkpoints (and saved analytics state) as the starting point."""
        found, saved = await self._read_checkpoints()
        self.checkpoints = found
        self._saved_analytics = saved
        self._start_seq = {symbol: cp.seq for symbol, cp in found.items()}
        self._next_seq = {}
        self.analytics = {}  # rebuilt from the saved states as commits need them
        return found

    async def _read_checkpoints(
        self,
    ) -> tuple[dict[str, Checkpoint], dict[str, tuple[dict[str, Any], dict[str, Any] | None]]]:
        prefix = f"{CHECKPOINT_PREFIX}:{self.source}:"
        found: dict[str, Checkpoint] = {}
        saved: dict[str, tuple[dict[str, Any], dict[str, Any] | None]] = {}
        with redis_errors(self.topology.url):
            async for key in self.redis.scan_iter(match=glob_escape(prefix) + "*", count=500):
                name = key.decode(errors="surrogateescape")
                values = await self.redis.hmget(
                    name, "seq", "ordinal", "analytics", "indicators", "count", "digest"
                )
                symbol = current_layout().untag(name[len(prefix) :])  # {DOL} on a cluster
                if values[0] is not None:
                    count = None if values[4] is None else int(values[4])
                    digest = None if values[5] is None else int(values[5])
                    found[symbol] = Checkpoint(int(values[0]), int(values[1] or 0), count, digest)
                if values[2]:
                    indicators = msgspec.json.decode(values[3]) if values[3] else None
                    saved[symbol] = (msgspec.json.decode(values[2]), indicators)
        return found, saved

    async def reset(self, keep_analytics: bool = False, only: Collection[str] | None = None) -> int:
        """Forget this source's checkpoints (the data it wrote stays until its TTLs).

        ``keep_analytics`` keeps the forming bars and indicator recursions: a live feed that
        starts again carries on the bar it was in instead of overwriting it. ``only`` limits it
        to these symbols: another ingester of the source may be running the others (its lease).
        """
        await self.load_checkpoints()
        if only is not None:
            self.checkpoints = {s: cp for s, cp in self.checkpoints.items() if s in only}
        with redis_errors(self.topology.url):
            for symbol in self.checkpoints:
                key = checkpoint_key(self.source, symbol)
                if keep_analytics:
                    await self.redis.hdel(key, "seq", "ordinal")
                else:
                    await self.redis.unlink(key)
        count = len(self.checkpoints)
        self.checkpoints = {}
        return count

    @property
    def idle(self) -> bool:
        """Nothing queued and no commit in flight: a new trade should go out at once."""
        return not self._pending and self._inflight_count == 0

    def wake(self) -> None:
        self._wake.set()

    @property
    def pending(self) -> int:
        """Trades queued and not yet acknowledged (the round in flight included)."""
        return self._pending_count + self._inflight_count

    def skip_map(self) -> dict[str, Checkpoint]:
        """Per symbol, where its committed lines end (and what they were): a replay skips them."""
        return dict(self.checkpoints)

    # -- feeding ----------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._committer(), name=f"ingest-committer-{self.source}")

    async def feed(self, chunk: Chunk) -> None:
        """Queue a chunk; waits while the queue is full. Already-committed trades are dropped."""
        if self._error is not None:
            raise self._error
        if len(chunk) and self.checkpoints and self.skip_committed:
            skip = np.array([self.checkpoints.get(s, Checkpoint()).ordinal for s in chunk.symbols])
            keep = chunk.ordinal > skip[chunk.code]
            if not keep.all():
                self.stats.resumed += int((~keep).sum())
                chunk = _select(chunk, np.flatnonzero(keep))
        if not len(chunk):
            return
        while self._pending_count >= self.max_pending:
            self._space.clear()
            await self._space.wait()
            if self._error is not None:
                raise self._error
        self._pending.append((chunk, time.monotonic()))
        self._pending_count += len(chunk)
        self._wake.set()

    async def close(self) -> None:
        """Commit everything queued, then stop the committer."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        if self._error is not None:
            raise self._error

    async def abort(self) -> None:
        await cancel_and_wait(self._task)

    # -- committing -------------------------------------------------------------------------

    async def _committer(self) -> None:
        """Take what is pending and send it as a round of commits, up to DEPTH rounds on the wire:
        the next round is built while Redis runs the previous one, and Redis finds the next one
        waiting when it is done. The script refuses a commit whose sequence number skips one, so
        a round sent after a failed one cannot jump the queue; the failed commits are resent in
        order."""
        inflight: deque[_Round] = deque()
        try:
            while True:
                self._refill()
                if self._pending and len(inflight) < DEPTH:
                    batch, accepted = self._take()
                    commits = self._commits(batch)
                    size = sum(len(c) for c in batch)
                    inflight.append(_Round(commits, size, accepted, self.wire.send(commits)))
                    self._inflight_count += size
                    await asyncio.sleep(0)  # let it go out on the wire before we build the next
                    continue
                if inflight and inflight[0].reply.done():
                    await self._settle(inflight)
                    continue
                if not inflight and not self._pending:
                    if self._closing:
                        return
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), 1.0)
                    continue
                waits: list[asyncio.Future[object]] = [inflight[0].reply]  # type: ignore[list-item]
                wake = None
                if len(inflight) < DEPTH:
                    self._wake.clear()
                    wake = asyncio.ensure_future(self._wake.wait())
                    waits.append(wake)
                await asyncio.wait(waits, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
                if wake is not None:
                    wake.cancel()
        except BaseException as exc:
            self._error = exc
            self._space.set()
            for rnd in inflight:
                if rnd.reply.done() and not rnd.reply.cancelled():
                    rnd.reply.exception()
            if not isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            await self.wire.close()

    def _refill(self) -> None:
        if not self._pending and self.refill is not None:
            chunk = self.refill()  # what the live API gathered while we were busy
            if chunk is not None and len(chunk):
                self._pending.append((chunk, time.monotonic()))
                self._pending_count += len(chunk)

    def _take(self) -> tuple[list[Chunk], float]:
        taken: list[Chunk] = []
        count, oldest = 0, time.monotonic()
        while self._pending and count < self.max_batch:
            chunk, accepted = self._pending[0]
            room = self.max_batch - count
            if len(chunk) <= room:
                self._pending.pop(0)
                taken.append(chunk)
                count += len(chunk)
            else:
                taken.append(_select(chunk, np.arange(room)))
                self._pending[0] = (_select(chunk, np.arange(room, len(chunk))), accepted)
                count += room
            oldest = min(oldest, accepted)
        self._pending_count -= count
        if self._pending_count < self.max_pending:
            self._space.set()
        return taken, oldest

    def _commits(self, batch: list[Chunk]) -> list[Commit]:
        by_symbol: dict[str, list[tuple[Chunk, np.ndarray]]] = {}
        for chunk in batch:
            for code in np.unique(chunk.code).tolist():
                rows = np.flatnonzero(chunk.code == code) if len(chunk.symbols) > 1 else None
                by_symbol.setdefault(chunk.symbols[code], []).append(
                    (chunk, rows if rows is not None else np.arange(len(chunk)))
                )
        commits = []
        for symbol, parts in by_symbol.items():
            seq = self._next_seq.get(symbol) or self.checkpoints.get(symbol, Checkpoint()).seq + 1
            self._next_seq[symbol] = seq + 1
            sl = _symbol_slice(symbol, parts)
            # the checkpoint ends at the symbol's own last line, never past a line of it that the
            # normalizer still holds back (a jump ahead waiting for confirmation)
            ordinals = np.concatenate([c.ordinal[rows] for c, rows in parts])
            end_ordinal = int(ordinals.max())
            spec = spec_for(symbol)
            ops: list[Op] = []
            state = ""
            if self.analytics_on:
                analytics = self._symbol_analytics(symbol, spec)
                ops = analytics.apply(sl.price, sl.qty, sl.side, sl.time_us, sl.cancel)
                state = msgspec.json.encode(analytics.state()).decode()
                if analytics.closed_since_save:  # saved in the same commit as the bar's close
                    saved = msgspec.json.encode(analytics.indicator_state()).decode()
                    ops.append(
                        (
                            "HSET",
                            self.topology.commit_target(Store.QUOTES),
                            checkpoint_key(self.source, symbol),
                            ["indicators", saved],
                        )
                    )
            commits.append(
                build_commit(sl, spec, self.source, seq, end_ordinal, self.layout, ops, state, ordinals)
            )
        return commits

    def _symbol_analytics(self, symbol: str, spec: SymbolSpec) -> SymbolAnalytics:
        analytics = self.analytics.get(symbol)
        if analytics is None:
            s = self.settings
            target = self.topology.commit_target
            dbs = (target(Store.ORDERFLOW), target(Store.FOOTPRINT), target(Store.CALC))  # bars, fpbars, calc
            analytics = SymbolAnalytics(
                symbol,
                spec,
                calendar_for(spec, s.smarttrade_sessions),
                self._timeframes,
                dbs,
                s.ttl(Store.CALC) or 0,
            )
            saved = self._saved_analytics.get(symbol)
            if saved is not None:
                analytics.load(*saved)
            self.analytics[symbol] = analytics
        return analytics

    async def _settle(self, inflight: deque[_Round]) -> None:
        """Account for the oldest round; on any failure, recover every round in flight."""
        rnd = inflight[0]
        replies = None if rnd.reply.exception() is not None else rnd.reply.result()
        if replies is not None and all(_applied(r) for r in replies):
            for c, r in zip(rnd.commits, replies, strict=True):
                self._account(c, r)  # type: ignore[arg-type]
            self._finish(rnd)
            inflight.popleft()
            return
        await self._recover(inflight)

    async def _recover(self, inflight: deque[_Round]) -> None:
        """Resend, in order, every commit of the rounds in flight that was not applied."""
        todo: list[Commit] = []
        errors: list[object] = []
        for rnd in inflight:
            with contextlib.suppress(Exception):
                await rnd.reply
            failure = rnd.reply.exception()
            replies: list[object] = (
                [failure] * len(rnd.commits) if failure is not None else rnd.reply.result()
            )
            for c, r in zip(rnd.commits, replies, strict=True):
                if _applied(r):
                    self._account(c, r)  # type: ignore[arg-type]
                else:
                    todo.append(c)
                    errors.append(r)
        delay, lost_contact = 0.2, False
        full_since: float | None = None  # when Redis began refusing writes, without room since
        while todo:
            reason = _classify(errors, self.topology.url)
            if isinstance(reason, SmartTradeError) and not isinstance(reason, OutOfMemory | RedisUnavailable):
                raise reason
            if isinstance(reason, OutOfMemory):  # a full Redis does not empty itself: give up in time
                full_since = full_since if full_since is not None else time.monotonic()
                waited = time.monotonic() - full_since
                if waited >= self.settings.smarttrade_full_wait:
                    raise stayed_full(reason, waited)
            else:
                full_since = None
            if isinstance(reason, OutOfMemory | RedisUnavailable):
                lost_contact = lost_contact or isinstance(reason, RedisUnavailable)
                reshard = next((e for e in errors if isinstance(e, RouteChanged) and e.resharding), None)
                if reshard is not None:
                    delay = min(delay, RESHARD_RETRY_S)
                    self.stats.waiting = f"waiting for a cluster reshard: {reshard}; retrying in {delay} s"
                else:
                    what = "Redis is full" if isinstance(reason, OutOfMemory) else "waiting for Redis"
                    self.stats.waiting = f"{what}: {reason}; retrying in {delay:.1f} s"
                self.on_wait(self.stats.waiting)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_S)
            try:
                with redis_errors(self.topology.url):
                    if lost_contact:
                        await self._check_not_behind()
                    if any(isinstance(e, rexc.NoScriptError) for e in errors):
                        await self.wire.load()
                replies = await self.wire.call(todo)
            except (RedisUnavailable, OutOfMemory) as exc:
                errors = [exc] * len(todo)
                continue
            except (rexc.ConnectionError, rexc.TimeoutError, OSError) as exc:
                errors = [exc] * len(todo)
                continue
            gaps_before = any(isinstance(e, rexc.ResponseError) and "GAP" in str(e) for e in errors)
            todo_next, errors = [], []
            for c, r in zip(todo, replies, strict=True):
                if _applied(r):
                    self._account(c, r)  # type: ignore[arg-type]
                else:
                    todo_next.append(c)
                    errors.append(r)
            if len(todo_next) < len(todo):
                full_since = None  # some went in: room was made
            todo = todo_next
            first = errors[0] if errors else None
            if gaps_before and isinstance(first, rexc.ResponseError) and "GAP" in str(first):
                # resent in order and still refused: the checkpoint went back (a reset, a flush,
                # or another ingester on this source); carrying on would count trades twice
                raise SmartTradeError(
                    f"ingest checkpoint of {todo[0].symbol} moved backwards ({first}); another "
                    "ingester on this source, or a reset while running? Stopping."
                )
        if self.stats.waiting:
            self.stats.waiting = ""
            self.on_wait("")
        for rnd in inflight:
            self._finish(rnd)
        inflight.clear()

    def _account(self, c: Commit, reply: list[int]) -> None:
        applied, seq, repaired, missed = (int(x) for x in reply)
        cp = self.checkpoints.setdefault(c.symbol, Checkpoint())
        if applied:
            cp.seq = seq
            self.stats.commits += 1
            self.stats.trades += c.trades
            self.stats.cancels += c.cancels
            self.stats.repaired += repaired
            self.stats.missed_cancels += missed
        elif int(c.args[0]) > self._start_seq.get(c.symbol, 0):  # ours: its reply was lost
            cp.seq = max(cp.seq, seq)
            self.stats.commits += 1
            self.stats.trades += c.trades
            self.stats.cancels += c.cancels
        else:  # applied by an earlier run: same effect, once
            cp.seq = max(cp.seq, seq)
            self.stats.skipped_commits += 1
        cp.ordinal = int(c.args[1])

    def _finish(self, rnd: _Round) -> None:
        self._inflight_count -= rnd.size
        self.stats.last_batch = rnd.size
        self.stats.max_batch = max(self.stats.max_batch, rnd.size)
        self.stats.lag_ms = (time.monotonic() - rnd.accepted) * 1000

    async def _eval_all(self, commits: list[Commit]) -> list[object]:
        """One round, sent and read back (tests and tools; the committer pipelines rounds)."""
        replies = await self.wire.call(commits)
        if any(isinstance(r, rexc.NoScriptError) for r in replies):
            await self.wire.load()
            replies = await self.wire.call(commits)
        return replies

    async def _check_not_behind(self) -> None:
        """After an outage: if Redis came back without commits we made, start over from there.

        Only reads: the engine's own state (analytics included) stays as it is unless we rewind.
        """
        theirs, _ = await self._read_checkpoints()
        behind = [s for s, cp in self.checkpoints.items() if theirs.get(s, Checkpoint()).seq < cp.seq]
        if behind:
            raise Rewind(f"Redis lost commits of {', '.join(sorted(behind))}; resuming from its checkpoints")


def stayed_full(reason: Exception, waited: float) -> StayedFull:
    return StayedFull(
        f"{reason}; still full after {waited:.0f} s (SMARTTRADE_FULL_WAIT): make room "
        "(`smarttrade cleanup --apply`, a larger maxmemory) and run the same command "
        "again: it resumes from its checkpoints"
    )


@dataclass
class _Round:
    commits: list[Commit]
    size: int
    accepted: float
    reply: asyncio.Future[list[object]]


def _applied(reply: object) -> bool:
    """A commit reply that needs no resend: applied now, or found applied before."""
    return isinstance(reply, list)


_WAIT_FOR = ("LOADING", "READONLY", "MASTERDOWN", "BUSY", "TRYAGAIN")


def _classify(errors: list[object], url: str) -> SmartTradeError | None:
    """What the failed commits call for: waiting (full or unreachable), or nothing but a resend
    (a GAP behind an earlier failure, NOSCRIPT); any other error is a bug worth stopping for."""
    for e in errors:
        if isinstance(e, OutOfMemory | RedisUnavailable):
            return e
        if isinstance(e, rexc.OutOfMemoryError) or (isinstance(e, rexc.ResponseError) and "OOM" in str(e)):
            return OutOfMemory(f"Redis at {redact(url)} refused a write: maxmemory reached ({e})")
        if isinstance(e, rexc.ConnectionError | rexc.TimeoutError | OSError):
            return RedisUnavailable(redact(url), str(e) or type(e).__name__)
        if isinstance(e, rexc.ResponseError) and str(e).startswith(_WAIT_FOR):
            return RedisUnavailable(redact(url), str(e))
    for e in errors:
        if (
            isinstance(e, rexc.ResponseError)
            and not isinstance(e, rexc.NoScriptError)
            and "GAP" not in str(e)
        ):
            return SmartTradeError(f"an ingest commit failed: {e}")
    return None


def _select(chunk: Chunk, rows: np.ndarray) -> Chunk:
    ids = None if chunk.trade_id is None else [chunk.trade_id[i] for i in rows.tolist()]
    return Chunk(
        chunk.symbols,
        chunk.code[rows],
        chunk.price[rows],
        chunk.qty[rows],
        chunk.side[rows],
        chunk.side_src[rows],
        chunk.time_us[rows],
        chunk.bid[rows],
        chunk.ask[rows],
        chunk.cancel[rows],
        chunk.ordinal[rows],
        ids,
        chunk.end_ordinal,
        chunk.meta,
    )


def _symbol_slice(symbol: str, parts: list[tuple[Chunk, np.ndarray]]) -> SymbolSlice:
    def cat(name: str) -> np.ndarray:
        arrays = [getattr(c, name)[rows] for c, rows in parts]
        return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)

    ids: list[str] | np.ndarray
    if all(c.trade_id is None for c, _ in parts):
        ids = cat("ordinal")
    else:
        ids = []
        for chunk, rows in parts:
            ids.extend(chunk.ids(rows))
    return SymbolSlice(
        symbol,
        cat("price"),
        cat("qty"),
        cat("side"),
        cat("side_src"),
        cat("time_us"),
        cat("bid"),
        cat("ask"),
        cat("cancel"),
        ids,
    )
