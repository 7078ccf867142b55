"""Driving a feed through the engine: pacing, progress, resume, and starting over after Redis
lost commits."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import time
from collections.abc import Awaitable, Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from smarttrade import stopping
from smarttrade.errors import OutOfMemory, SmartTradeError
from smarttrade.feeds.chunk import Chunk
from smarttrade.feeds.files import LineParser, parse_lines, read_lines
from smarttrade.feeds.record import MAX_LINE_BYTES
from smarttrade.ingest import identity
from smarttrade.ingest.deadletter import DeadLetters
from smarttrade.ingest.defaults import DEFAULT_FUTURE_S, DEFAULT_TOLERANCE_S
from smarttrade.ingest.engine import (
    MAX_RETRY_S,
    Checkpoint,
    Engine,
    IngestStats,
    Rewind,
    _select,
    stayed_full,
)
from smarttrade.ingest.figures import publish_figures
from smarttrade.ingest.lease import Lease
from smarttrade.ingest.normalize import Changed, Normalizer
from smarttrade.keyspace import Store
from smarttrade.redis.periodic import periodic
from smarttrade.redis.topology import Topology
from smarttrade.settings import Settings
from smarttrade.stores.symbol_data import forget_symbols

CHUNK = 4096
CLOSE_GRACE_S = 5.0  # a timed run waits this long for its last commits
PACE_SLICE_S = 0.02  # wall time covered by one paced slice
PUBLISH_EVERY_S = 1.0  # lag and batch sizes for `smarttrade monitor` and the exporter
RECORD_EVERY_S = 1.0  # a file source's record follows the reading this often (identity.py)


class Feed(Protocol):
    name: str
    total: int | None  # for the progress bar: bytes or trades; None when endless
    done: int
    resumed: int  # records it dropped itself as committed by an earlier run
    live: bool  # a live feed cannot be replayed: each run starts afresh (no resume)

    def chunks(self, skip: dict[str, Checkpoint], dead: DeadLetters) -> Iterator[Chunk]: ...


class TooManyRejects(SmartTradeError):
    """A run that accepts nothing, or mostly rejects: stopped, naming the top reason and its fix."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.result: RunResult | None = None  # what was done up to the stop


class AcceptedLinesChanged(Exception):
    """Symbols whose accepted lines up to their checkpoints changed: they must start over."""

    def __init__(self, changed: list[Changed]) -> None:
        super().__init__(", ".join(c.symbol for c in changed))
        self.changed = changed


REJECT_CHECK_AFTER = 1000  # lines judged before the reject share is checked
REJECT_MAX_SHARE = 0.5  # more rejected than this share of the lines judged: the run stops


@dataclass
class FileFeed:
    """Lines of one format, from one or more files, in order."""

    parser: Callable[[], LineParser]
    paths: Sequence[Path]
    name: str
    tolerance_s: float = DEFAULT_TOLERANCE_S
    total: int | None = None
    done: int = 0
    resumed: int = 0
    live: bool = False
    skipped: int = 0  # lines of instruments not tracked (B3 files hold the whole market)
    fmt: str = ""
    explicit: bool = False  # ``name`` given by the user (--source): not looked up by content
    future_s: float = DEFAULT_FUTURE_S
    resolved: bool = False  # the name was checked against the source records (identity.py)
    accepted: int = 0

    def __post_init__(self) -> None:
        self.total = sum(p.stat().st_size for p in self.paths)
        self._read_hash = hashlib.sha1()
        self._read_bytes = 0

    def read_so_far(self) -> tuple[int, str]:
        """How many bytes of the input were read, from its start, and their sha1 (the source
        record's ``bytes`` and ``hash``; identity.py)."""
        return self._read_bytes, self._read_hash.hexdigest()

    def chunks(self, skip: dict[str, Checkpoint], dead: DeadLetters) -> Iterator[Chunk]:
        norm = Normalizer(dead, skip, self.tolerance_s, future_s=self.future_s, replay=True)
        self.done = 0
        self._read_hash, self._read_bytes = hashlib.sha1(), 0
        last = 0
        lines = read_lines(self.paths)

        def counted() -> Iterator:
            whole = True  # the hash covers the bytes up to the first line read cut (oversized)
            for line in lines:
                self.done += len(line.raw)
                if whole and len(line.raw) > MAX_LINE_BYTES and not line.raw.endswith(b"\n"):
                    whole = False
                if whole:
                    self._read_hash.update(line.raw)
                    self._read_bytes += len(line.raw)
                yield line

        parser = self.parser()
        for item in parse_lines(parser, counted()):
            norm.feed(item)
            last = item.line.ordinal
            judged = norm.accepted + dead.count
            if judged >= REJECT_CHECK_AFTER and dead.count > REJECT_MAX_SHARE * judged:
                self.accepted = norm.accepted
                if len(norm.builder):  # what was accepted is kept
                    yield norm.builder.take(last)
                raise TooManyRejects(
                    reject_message(self, dead, f"{dead.count:,} of the first {judged:,} lines rejected")
                )
            if len(norm.builder) >= CHUNK:
                self.accepted = norm.accepted
                yield norm.builder.take(last)
            self.resumed = norm.skipped
        norm.finish()
        self.accepted = norm.accepted
        if len(norm.builder):
            yield norm.builder.take(last)
        self.resumed = norm.skipped
        self.skipped = getattr(parser, "skipped", 0)
        if norm.changed:
            raise AcceptedLinesChanged(list(norm.changed.values()))


def _fix(kind: str, example: str) -> str:
    """What to do about the most common reason of a failed run."""
    unknown = re.match(r"unknown symbol '([^']*)'", example)
    if unknown:
        return f"declare it, e.g. SMARTTRADE_SYMBOLS={unknown.group(1)}:TICK:QTY_DECIMALS (or --symbol-spec)"
    if re.search(r"header|fields;|broken (CSV|JSON)|not a JSON object|line is over|unreadable", example):
        return "is this the right --format (csv, jsonl, b3, mt5, tardis; docs/ingest.md)?"
    if "tick" in example or "price scale" in example or "quantity of" in example:
        return "check the instrument's declaration (tick, quantity decimals) against the data"
    if kind == "time":
        return "check the time column and --tolerance / --future-tolerance"
    return "see the dead letters"


def nothing_accepted(feed: FileFeed, dead: DeadLetters) -> str:
    """Why a run that accepted no line fails."""
    if dead.count:
        return reject_message(feed, dead, f"all {dead.count:,} lines rejected")
    files = ", ".join(p.name for p in feed.paths)
    if feed.skipped:
        return (
            f"{files}: all {feed.skipped:,} trade lines are of instruments not tracked (skipped); "
            "declare the instrument (SMARTTRADE_SYMBOLS) or check --only"
        )
    return f"{files}: no trade lines found; is this the right --format?"


def reject_message(feed: FileFeed, dead: DeadLetters, what: str) -> str:
    kind, _ = max(dead.reasons.items(), key=lambda kv: kv[1])
    example = dead.examples.get(kind, kind)
    files = ", ".join(p.name for p in feed.paths)
    return f"{files}: {what}; top reason: {example}: {_fix(kind, example)}"


@dataclass
class ChunkFeed:
    """A source that makes chunks itself (the synthetic generators)."""

    make: Callable[[], Iterator[Chunk]]
    name: str
    total: int | None = None
    done: int = 0
    resumed: int = 0  # the engine drops committed trades of chunk feeds itself
    live: bool = False

    def chunks(self, skip: dict[str, Checkpoint], dead: DeadLetters) -> Iterator[Chunk]:
        self.done = 0
        for chunk in self.make():
            self.done += len(chunk)
            yield chunk


@dataclass
class RunResult:
    stats: IngestStats
    rejected: int
    reasons: dict[str, int] = field(default_factory=dict)
    restarts: int = 0
    skipped: int = 0
    examples: dict[str, str] = field(default_factory=dict)  # reason kind -> a full reason
    source: str = ""
    started_over: list[str] = field(default_factory=list)  # symbols whose accepted lines changed


async def _paced(chunk: Chunk, speed: float | None, clock: dict[str, float]) -> Iterator[Chunk]:
    """Slices of ``chunk`` released at ``speed`` times real time (None: no waiting)."""
    not_before = chunk.meta.get("not_before")
    if isinstance(not_before, float):
        delay = not_before - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        return iter((chunk,))
    if speed is None or not len(chunk):
        return iter((chunk,))
    if "data0" not in clock:
        clock["data0"], clock["wall0"] = float(chunk.time_us[0]), time.monotonic()
    out = []
    step = PACE_SLICE_S * speed * 1e6
    edges = np.arange(float(chunk.time_us[0]) + step, float(chunk.time_us[-1]) + step, step)
    cuts = np.searchsorted(chunk.time_us, edges).tolist()
    start = 0
    for cut in [*cuts, len(chunk)]:
        if cut > start:
            out.append(_select(chunk, np.arange(start, cut)))
            start = cut
    return iter(out)


async def run_feed(
    topology: Topology,
    settings: Settings,
    feed: Feed,
    dead_letter: Path | None,
    speed: float | None = None,
    reset: bool = False,
    duration: float | None = None,
    on_progress: Callable[[Engine, DeadLetters, Feed], None] = lambda *_: None,
    on_wait: Callable[[str], None] = lambda _: None,
    on_chunk: Callable[[Chunk], None] = lambda _: None,
    symbols: Collection[str] | None = None,
) -> RunResult:
    """Run ``feed`` to its end (or for ``duration`` seconds), resuming from its checkpoints.
    ``symbols``: the ones this ingester runs, when it shares its source with others (a live
    feed's fresh start then forgets only their checkpoints)."""
    current: list[Engine] = []
    client = topology.client(Store.QUOTES)

    async def publish() -> None:  # this ingester's figures, for `monitor` and the exporter
        if current:
            await publish_figures(client, feed.name, current[-1].stats)

    async with periodic(PUBLISH_EVERY_S, publish):
        args = (speed, reset, duration, on_progress, on_wait, on_chunk, current, symbols)
        return await _run_feed(topology, settings, feed, dead_letter, *args)


async def run_leased(
    topology: Topology,
    settings: Settings,
    feed: Feed,
    symbols: Sequence[str] | None,
    dead_letter: Path | None,
    **options: Any,
) -> RunResult:
    """``run_feed`` under the source's lease for ``symbols`` (None: whatever the input holds), so
    no other ingester runs them meanwhile (ingest/lease.py; LeaseHeld, LeaseLost exit 2). The
    source is resolved first: the lease is named by it. ``reset`` starts every symbol of the
    source over, so it leases them all."""
    reset = bool(options.get("reset"))
    await resolve_source(topology, settings, feed, reset)
    claim = None if reset else symbols
    client = topology.client(Store.QUOTES)
    lease = Lease(client, feed.name, claim, settings.smarttrade_ingest_lease_s, topology.url)
    return await lease.hold(
        lambda: run_feed(topology, settings, feed, dead_letter, symbols=symbols, **options)
    )


async def resolve_source(topology: Topology, settings: Settings, feed: Feed, reset: bool = False) -> str:
    """A file feed's source name, found by its content (identity.py); refuses an input whose
    ingested part changed unless ``reset``. Other feeds keep their name."""
    if isinstance(feed, FileFeed) and not feed.resolved:
        client = topology.client(Store.QUOTES)
        name, _ = await identity.identify(
            client, topology.url, feed.fmt, feed.paths, feed.name, feed.explicit, allow_changed=reset
        )
        feed.name, feed.resolved = name, True
    return feed.name


async def reset_plan(topology: Topology, settings: Settings, feed: Feed) -> list[str]:
    """The symbols ``--reset`` would start over (those this source has checkpoints for)."""
    await resolve_source(topology, settings, feed, reset=True)
    return sorted(await Engine(topology, settings, feed.name).load_checkpoints())


async def _start_over(topology: Topology, settings: Settings, feed: Feed, engine: Engine) -> list[str]:
    """``--reset``: the source's symbols lose their data, bars and checkpoints together."""
    symbols = sorted(await engine.load_checkpoints())
    await forget_symbols(topology, symbols)
    await engine.reset()
    if isinstance(feed, FileFeed):
        client = topology.client(Store.QUOTES)
        await identity.forget_record(client, topology.url, feed.name)
    return symbols


async def _run_feed(
    topology: Topology,
    settings: Settings,
    feed: Feed,
    dead_letter: Path | None,
    speed: float | None,
    reset: bool,
    duration: float | None,
    on_progress: Callable[[Engine, DeadLetters, Feed], None],
    on_wait: Callable[[str], None],
    on_chunk: Callable[[Chunk], None],
    current: list[Engine],
    symbols: Collection[str] | None,
) -> RunResult:
    restarts = 0
    started = time.monotonic()
    started_over: list[str] = []
    await resolve_source(topology, settings, feed, reset)
    quotes = topology.client(Store.QUOTES)

    async def save_record(*progress: object) -> None:  # this file source's record (identity.py)
        assert isinstance(feed, FileFeed)
        args = (quotes, topology.url, feed.name, feed.fmt, feed.paths, *progress)
        await _while_full(settings, on_wait, identity.write_record, *args)

    while True:
        engine = Engine(topology, settings, feed.name, on_wait=on_wait)
        current[:] = [engine]
        if reset:
            await _start_over(topology, settings, feed, engine)
        elif feed.live:
            await engine.reset(keep_analytics=True, only=symbols)
        reset = False
        await engine.load_checkpoints()
        floor = 0  # a record only moves forward: a resumed run re-reads from the start
        if isinstance(feed, FileFeed):
            record = await identity.read_record(quotes, topology.url, feed.name)
            if record is None:  # before the first commit, so a copy of a run killed early is found
                await save_record()
            floor = 0 if record is None else record.bytes
        recorded = time.monotonic()
        dead = DeadLetters(dead_letter, feed.name)
        engine.start()
        clock: dict[str, float] = {}
        try:
            for chunk in feed.chunks(engine.skip_map(), dead):
                for part in await _paced(chunk, speed, clock):
                    if speed is not None and "data0" in clock and len(part):
                        due = clock["wall0"] + (float(part.time_us[0]) - clock["data0"]) / 1e6 / speed
                        delay = due - time.monotonic()
                        if delay > 0:
                            await asyncio.sleep(delay)
                    on_chunk(part)
                    stopping.check()  # a stop whose cancel redis-py swallowed
                    await engine.feed(part)
                    await asyncio.sleep(0)  # let the committer send while we parse on
                on_progress(engine, dead, feed)
                if (
                    isinstance(feed, FileFeed)
                    and time.monotonic() - recorded >= RECORD_EVERY_S
                    and feed.read_so_far()[0] > floor
                ):  # the record covers what was read, so never less than what is committed
                    await save_record(feed.read_so_far())
                    recorded = time.monotonic()
                if duration is not None and time.monotonic() - started >= duration:
                    break
            if duration is None:
                await engine.close()
            else:  # a timed run ends on time, even when Redis cannot take what is left
                try:
                    await asyncio.wait_for(engine.close(), CLOSE_GRACE_S)
                except TimeoutError:
                    engine.stats.abandoned = engine.pending
            engine.stats.resumed += feed.resumed
            on_progress(engine, dead, feed)
            skipped = getattr(feed, "skipped", 0)
            result = RunResult(
                engine.stats,
                dead.count,
                dict(dead.reasons),
                restarts,
                skipped,
                dict(dead.examples),
                feed.name,
                started_over,
            )
            if isinstance(feed, FileFeed) and feed.read_so_far()[0] >= floor:
                await save_record(feed.read_so_far(), dead.count)
                if not feed.accepted:
                    refused = TooManyRejects(nothing_accepted(feed, dead))
                    refused.result = result
                    raise refused
            return result
        except Rewind as exc:
            on_wait(str(exc))
            await engine.abort()
            restarts += 1
        except AcceptedLinesChanged as exc:
            await engine.close()  # what the other symbols queued
            names = [c.symbol for c in exc.changed]
            await forget_symbols(topology, names)
            for c in exc.changed:
                on_wait(
                    f"{c.symbol}: the lines accepted up to its checkpoint changed ({c.committed:,} "
                    f"committed, {c.accepted:,} accepted now); starting {c.symbol} over"
                )
            started_over += names
            restarts += 1
        except TooManyRejects as exc:
            if exc.result is None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(engine.close(), CLOSE_GRACE_S)  # keep what was accepted
                engine.stats.resumed += feed.resumed
                exc.result = RunResult(
                    engine.stats,
                    dead.count,
                    dict(dead.reasons),
                    restarts,
                    getattr(feed, "skipped", 0),
                    dict(dead.examples),
                    feed.name,
                    started_over,
                )
            raise
        finally:
            dead.close()
            await engine.abort()


async def _while_full(
    settings: Settings, on_wait: Callable[[str], None], write: Callable[..., Awaitable[None]], *args: object
) -> None:
    """A source-record write on a full Redis waits like the commits do (SMARTTRADE_FULL_WAIT),
    then stops with exit 2, instead of failing the run at once."""
    started, delay = time.monotonic(), 0.2
    while True:
        try:
            await write(*args)
            return
        except OutOfMemory as exc:
            waited = time.monotonic() - started
            if waited >= settings.smarttrade_full_wait:
                raise stayed_full(exc, waited) from None
            on_wait(f"Redis is full: {exc}; retrying in {delay:.1f} s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_S)
