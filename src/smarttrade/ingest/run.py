"""Driving a feed through the engine: pacing, progress, resume, and starting over after Redis
lost commits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from smarttrade.feeds.chunk import Chunk
from smarttrade.feeds.files import LineParser, parse_lines, read_lines
from smarttrade.ingest.deadletter import DeadLetters
from smarttrade.ingest.engine import Engine, IngestStats, Rewind, _select
from smarttrade.ingest.normalize import DEFAULT_TOLERANCE_S, Normalizer
from smarttrade.keyspace import Store
from smarttrade.ops.published import periodic, publish_ingest
from smarttrade.redis.connections import RedisPools
from smarttrade.settings import Settings

CHUNK = 4096
CLOSE_GRACE_S = 5.0  # a timed run waits this long for its last commits
PACE_SLICE_S = 0.02  # wall time covered by one paced slice
PUBLISH_EVERY_S = 1.0  # lag and batch sizes for `smarttrade monitor` and the exporter


class Feed(Protocol):
    name: str
    total: int | None  # for the progress bar: bytes or trades; None when endless
    done: int
    resumed: int  # records it dropped itself as committed by an earlier run
    live: bool  # a live feed cannot be replayed: each run starts afresh (no resume)

    def chunks(self, skip: dict[str, int], dead: DeadLetters) -> Iterator[Chunk]: ...


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

    def __post_init__(self) -> None:
        self.total = sum(p.stat().st_size for p in self.paths)

    def chunks(self, skip: dict[str, int], dead: DeadLetters) -> Iterator[Chunk]:
        norm = Normalizer(dead, skip, self.tolerance_s)
        self.done = 0
        last = 0
        lines = read_lines(self.paths)

        def counted() -> Iterator:
            for line in lines:
                self.done += len(line.raw)
                yield line

        parser = self.parser()
        for item in parse_lines(parser, counted()):
            norm.feed(item)
            last = item.line.ordinal
            if len(norm.builder) >= CHUNK:
                yield norm.builder.take(last)
            self.resumed = norm.skipped
        if len(norm.builder):
            yield norm.builder.take(last)
        self.resumed = norm.skipped
        self.skipped = getattr(parser, "skipped", 0)


@dataclass
class ChunkFeed:
    """A source that makes chunks itself (the synthetic generators)."""

    make: Callable[[], Iterator[Chunk]]
    name: str
    total: int | None = None
    done: int = 0
    resumed: int = 0  # the engine drops committed trades of chunk feeds itself
    live: bool = False

    def chunks(self, skip: dict[str, int], dead: DeadLetters) -> Iterator[Chunk]:
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
    pools: RedisPools,
    settings: Settings,
    feed: Feed,
    dead_letter: Path | None,
    speed: float | None = None,
    reset: bool = False,
    duration: float | None = None,
    on_progress: Callable[[Engine, DeadLetters, Feed], None] = lambda *_: None,
    on_wait: Callable[[str], None] = lambda _: None,
    on_chunk: Callable[[Chunk], None] = lambda _: None,
) -> RunResult:
    """Run ``feed`` to its end (or for ``duration`` seconds), resuming from its checkpoints."""
    current: list[Engine] = []
    client = pools.client(settings.db(Store.QUOTES))

    async def publish() -> None:  # this ingester's figures, for `monitor` and the exporter
        if current:
            await publish_ingest(client, feed.name, current[-1].stats)

    async with periodic(PUBLISH_EVERY_S, publish):
        args = (speed, reset, duration, on_progress, on_wait, on_chunk, current)
        return await _run_feed(pools, settings, feed, dead_letter, *args)


async def _run_feed(
    pools: RedisPools,
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
) -> RunResult:
    restarts = 0
    started = time.monotonic()
    while True:
        engine = Engine(pools, settings, feed.name, on_wait=on_wait)
        current[:] = [engine]
        if reset or feed.live:
            await engine.reset(keep_analytics=feed.live and not reset)
            reset = False
        await engine.load_checkpoints()
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
                    await engine.feed(part)
                    await asyncio.sleep(0)  # let the committer send while we parse on
                on_progress(engine, dead, feed)
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
            return RunResult(engine.stats, dead.count, dict(dead.reasons), restarts, skipped)
        except Rewind as exc:
            on_wait(str(exc))
            await engine.abort()
            restarts += 1
        finally:
            dead.close()
            await engine.abort()
