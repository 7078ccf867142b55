"""The demo: the live synthetic B3 feed through the ingest engine, plus a demo user.

Besides what the engine writes (quotes, order flow, footprint, the trade stream), the demo keeps a
session VWAP per symbol in the calculations store and a demo user's session and settings, so every
store has something to show.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np

from smarttrade.errors import OutOfMemory
from smarttrade.feeds.chunk import Chunk
from smarttrade.feeds.synthetic import LiveSyntheticFeed
from smarttrade.ingest.engine import IngestStats
from smarttrade.ingest.run import ChunkFeed, run_feed
from smarttrade.redis.connections import RedisPools
from smarttrade.settings import Settings
from smarttrade.stores import Stores
from smarttrade.symbols import spec_for

DEMO_USER = "demo"
CALC_EVERY_S = 1.0
TOUCH_EVERY_S = 30.0


@dataclass
class DemoStats:
    ingest: IngestStats = field(default_factory=IngestStats)
    refused: int = 0  # demo writes Redis refused for lack of memory
    last_refusal: str = ""
    waiting: str = ""  # what the engine is waiting for, if anything
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def trades(self) -> int:
        return self.ingest.trades


@dataclass
class _Vwap:
    """Session VWAP per symbol: sum(price * qty) / sum(qty), in exact integer units."""

    pv: dict[str, int] = field(default_factory=dict)
    qty: dict[str, int] = field(default_factory=dict)

    def add(self, chunk: Chunk) -> None:
        for code, symbol in enumerate(chunk.symbols):
            mask = chunk.code == code
            if mask.any():
                q = chunk.qty[mask]
                self.pv[symbol] = self.pv.get(symbol, 0) + int(np.dot(chunk.price[mask], q))
                self.qty[symbol] = self.qty.get(symbol, 0) + int(q.sum())

    def value(self, symbol: str) -> float:
        return self.pv[symbol] / self.qty[symbol] / spec_for(symbol).price_scale


async def _guarded(stats: DemoStats, write: Awaitable[object]) -> None:
    """Run one demo write; a full Redis is counted and reported, not fatal."""
    try:
        await write
    except OutOfMemory as exc:
        stats.refused += 1
        stats.last_refusal = str(exc)


async def _setup_user(stores: Stores, symbols: list[str], stats: DemoStats) -> None:
    first = symbols[0]
    latest = await stores.quotes.latest(first)
    price = latest.price * 1.002 if latest else 1.0
    alert = {first: {"price": round(price, 1), "type": "above"}}
    await _guarded(stats, stores.sessions.open(DEMO_USER, uuid.uuid4().hex[:12], symbols))
    await _guarded(stats, stores.configs.set(DEMO_USER, "theme", "dark"))
    await _guarded(stats, stores.configs.set(DEMO_USER, "symbols", symbols))
    await _guarded(stats, stores.configs.set(DEMO_USER, "alerts", alert))


async def run_demo(
    pools: RedisPools,
    settings: Settings,
    stores: Stores,
    symbols: list[str],
    rate: float,
    duration: float | None,
    on_tick: Callable[[DemoStats], None] = lambda _: None,
    seed: int = 1,
    stats: DemoStats | None = None,
) -> DemoStats:
    """Feed about ``rate`` trades/s per symbol until ``duration`` seconds pass (or forever).

    ``stats`` is updated as it goes, so a caller interrupted mid-way still has the figures.
    """
    stats = stats if stats is not None else DemoStats()
    vwap = _Vwap()
    live = LiveSyntheticFeed(symbols, seed=seed, rate=rate)
    feed = ChunkFeed(live.chunks, f"demo-{live.name}", live=True)
    await _setup_user(stores, symbols, stats)

    def progress(engine, dead, feed) -> None:  # type: ignore[no-untyped-def]
        stats.ingest = engine.stats
        on_tick(stats)

    def waiting(message: str) -> None:
        stats.waiting = message
        on_tick(stats)

    async def side_writes() -> None:
        next_touch = time.monotonic() + TOUCH_EVERY_S
        while True:
            await asyncio.sleep(CALC_EVERY_S)
            for symbol in list(vwap.qty):
                await _guarded(stats, stores.calc.put(symbol, "vwap", vwap.value(symbol)))
            if time.monotonic() > next_touch:
                await _guarded(stats, stores.sessions.touch(DEMO_USER))
                next_touch += TOUCH_EVERY_S
            on_tick(stats)

    writer = asyncio.create_task(side_writes())
    try:
        result = await run_feed(
            pools,
            settings,
            feed,
            None,
            duration=duration,
            on_progress=progress,
            on_wait=waiting,
            on_chunk=vwap.add,
        )
        stats.ingest = result.stats
        for symbol in list(vwap.qty):  # the last word, so a short demo has its calculations too
            await _guarded(stats, stores.calc.put(symbol, "vwap", vwap.value(symbol)))
    finally:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
    return stats
