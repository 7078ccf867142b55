"""The demo: the live synthetic B3 feed through the ingest engine, plus a demo user.

Besides what the engine writes (quotes, order flow, footprint, the trade stream, bars and
indicators), the demo keeps a demo user's session and settings, so every store has something to
show.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from smarttrade.errors import OutOfMemory, SmartTradeError
from smarttrade.feeds.synthetic import LiveSyntheticFeed
from smarttrade.ingest.engine import IngestStats
from smarttrade.ingest.run import ChunkFeed, run_feed
from smarttrade.redis.connections import RedisPools
from smarttrade.settings import Settings
from smarttrade.stores import Stores
from smarttrade.symbols import spec_for

DEMO_USER = "demo"
DEMO_SESSIONS = "regular=00:00-23:59"
TOUCH_EVERY_S = 30.0
READ_EVERY_S = 0.5  # the demo user's dashboard polling the stores (per-store hit rates)
INDICATORS = ("rsi", "vwap", "ema_20_1m")


@dataclass
class DemoStats:
    ingest: IngestStats = field(default_factory=IngestStats)
    refused: int = 0  # demo writes Redis refused for lack of memory
    last_refusal: str = ""
    waiting: str = ""  # what the engine is waiting for, if anything
    last_wait: str = ""  # the last thing it waited for (kept after it cleared)
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def trades(self) -> int:
        return self.ingest.trades


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
    # The demo trades around the clock: one all-day regular session, so bars get indicators at
    # any hour (a real B3 calendar would call 3 a.m. trades off-session).
    settings = settings.model_copy(update={"smarttrade_sessions": DEMO_SESSIONS})
    live = LiveSyntheticFeed(symbols, seed=seed, rate=rate)
    feed = ChunkFeed(live.chunks, f"demo-{live.name}", live=True)
    await _setup_user(stores, symbols, stats)

    def progress(engine, dead, feed) -> None:  # type: ignore[no-untyped-def]
        stats.ingest = engine.stats
        on_tick(stats)

    def waiting(message: str) -> None:
        stats.waiting = message
        stats.last_wait = message or stats.last_wait
        on_tick(stats)

    async def keep_session() -> None:
        while True:
            await asyncio.sleep(TOUCH_EVERY_S)
            await _guarded(stats, stores.sessions.touch(DEMO_USER))

    async def dashboard() -> None:
        """Read like a dashboard does, so `monitor` has per-store hit rates to show."""
        while True:
            await asyncio.sleep(READ_EVERY_S)
            now = int(time.time())
            for symbol in symbols:
                quote = await stores.quotes.latest(symbol)
                await stores.quotes.get(symbol, now - 1)
                await stores.orderflow.second(symbol, now - 1)
                if quote is not None:
                    await stores.footprint.level(symbol, spec_for(symbol).level(quote.price))
                for name in INDICATORS:
                    await stores.calc.get(symbol, name)
            await stores.sessions.get(DEMO_USER)
            await stores.configs.get(DEMO_USER, "theme")

    writer = asyncio.create_task(keep_session())
    reader = asyncio.create_task(dashboard())
    try:
        result = await run_feed(
            pools,
            settings,
            feed,
            None,
            duration=duration,
            on_progress=progress,
            on_wait=waiting,
        )
        stats.ingest = result.stats
    finally:
        for task in (writer, reader):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, SmartTradeError):
                await task
    return stats
