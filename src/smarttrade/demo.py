"""The demo: the live synthetic B3 feed through the ingest engine, plus a demo user.

It starts with a back-filled past (the last ``BACKFILL_S`` seconds, replayed at full speed through
the same engine), so bars, footprint metrics and indicators (MACD needs 34 closed 1m bars) have
values from the first second; then it goes live. Besides what the engine writes (quotes, order
flow, footprint, the trade stream, bars and indicators), the demo keeps a demo user's session and
settings, so every store has something to show.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from smarttrade.errors import OutOfMemory, SmartTradeError
from smarttrade.feeds.synthetic import START_PRICES, Backfill, LiveSyntheticFeed
from smarttrade.gateway.app import create_app
from smarttrade.gateway.auth import Tokens, demo_secret
from smarttrade.gateway.context import GatewayContext
from smarttrade.gateway.server import Gateway
from smarttrade.ingest.engine import IngestStats
from smarttrade.ingest.run import ChunkFeed, run_feed
from smarttrade.redis.periodic import periodic
from smarttrade.redis.topology import Topology
from smarttrade.settings import Settings
from smarttrade.stores import Stores
from smarttrade.symbols import root_of, spec_for

DEMO_USER = "demo"
DEMO_SESSIONS = "regular=00:00-23:59"
TOUCH_EVERY_S = 30.0
READ_EVERY_S = 0.5  # the demo user's dashboard polling the stores (per-store hit rates)
INDICATORS = ("rsi", "vwap", "ema_20_1m")
BACKFILL_S = 2 * 3600.0  # 120 closed 1m bars, 24 of 5m, 8 of 15m
BACKFILL_TRADES = 20_000  # per symbol at most (about a second of engine work for three)


@dataclass
class DemoStats:
    ingest: IngestStats = field(default_factory=IngestStats)
    refused: int = 0  # demo writes Redis refused for lack of memory
    last_refusal: str = ""
    waiting: str = ""  # what the engine is waiting for, if anything
    last_wait: str = ""  # the last thing it waited for (kept after it cleared)
    started: float = field(default_factory=time.monotonic)
    backfill_s: float = 0.0  # the past replayed before going live (0: none)
    backfill_trades: int = 0  # trades of that past handed to the engine (committed first)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def trades(self) -> int:
        return self.ingest.trades

    @property
    def backfilled(self) -> int:
        """Back-filled trades committed (they go before every live one)."""
        return min(self.backfill_trades, self.ingest.trades)

    @property
    def live_trades(self) -> int:
        return self.ingest.trades - self.backfilled


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
    # a little above where the feed is (or starts, on an empty Redis): an alert the walk can reach
    base = latest.price if latest else float(START_PRICES.get(root_of(first), 100))
    price = base * 1.002
    alert = {first: {"price": round(price, 1), "type": "above"}}
    await _guarded(stats, stores.sessions.open(DEMO_USER, uuid.uuid4().hex[:12], symbols))
    await _guarded(stats, stores.configs.set(DEMO_USER, "theme", "dark"))
    await _guarded(stats, stores.configs.set(DEMO_USER, "symbols", symbols))
    await _guarded(stats, stores.configs.set(DEMO_USER, "alerts", alert))


async def _backfill(stores: Stores, symbols: list[str], rate: float, window_s: float) -> Backfill | None:
    """The past to replay: the last ``window_s`` seconds, but never before what an earlier demo
    already wrote (its latest quotes), so a restarted demo fills the gap instead of counting the
    same minutes twice. Thinned to at most ``BACKFILL_TRADES`` per symbol, to stay quick."""
    if window_s <= 0:
        return None
    now = time.time()
    start = now - window_s
    for symbol in symbols:
        latest = await stores.quotes.latest(symbol)
        if latest is not None:
            start = max(start, latest.timestamp + 0.001)
    if now - start < 1.0:
        return None
    return Backfill(start, now, min(rate, BACKFILL_TRADES / (now - start)))


@asynccontextmanager
async def demo_gateway(topology: Topology, settings: Settings, stores: Stores) -> AsyncIterator[str]:
    """The gateway beside the feed, in this event loop; yields the dashboard URL with a token for
    the demo user. The secret is SMARTTRADE_GATEWAY_SECRET when set (an open page's token then
    outlives a demo restart), else one made for this run. The port is SMARTTRADE_GATEWAY_PORT
    when set, else a free one (a demo must not fail on a busy 8000)."""
    port = settings.smarttrade_gateway_port if "smarttrade_gateway_port" in settings.model_fields_set else 0
    tokens = Tokens(settings.smarttrade_gateway_secret or demo_secret())
    gateway = Gateway(
        create_app(GatewayContext(settings, topology, stores, tokens)), settings.smarttrade_gateway_host, port
    )
    await gateway.start()
    try:
        yield f"{gateway.url}/?token={tokens.create(DEMO_USER)}"
    finally:
        await gateway.stop()


async def run_demo(
    topology: Topology,
    settings: Settings,
    stores: Stores,
    symbols: list[str],
    rate: float,
    duration: float | None,
    on_tick: Callable[[DemoStats], None] = lambda _: None,
    seed: int = 1,
    stats: DemoStats | None = None,
    backfill_s: float = BACKFILL_S,
    on_dashboard: Callable[[str], None] | None = None,
) -> DemoStats:
    """Back-fill the last ``backfill_s`` seconds, then feed about ``rate`` trades/s per symbol
    until ``duration`` seconds pass (or forever). With ``on_dashboard``, the gateway runs beside
    the feed and its dashboard URL is handed to it first.

    ``stats`` is updated as it goes, so a caller interrupted mid-way still has the figures.
    """
    feed = (topology, settings, stores, symbols, rate, duration, on_tick, seed, stats, backfill_s)
    if on_dashboard is None:
        return await _feed(*feed)
    async with demo_gateway(topology, settings, stores) as url:
        on_dashboard(url)
        return await _feed(*feed)


async def _feed(
    topology: Topology,
    settings: Settings,
    stores: Stores,
    symbols: list[str],
    rate: float,
    duration: float | None,
    on_tick: Callable[[DemoStats], None],
    seed: int,
    stats: DemoStats | None,
    backfill_s: float,
) -> DemoStats:
    stats = stats if stats is not None else DemoStats()
    # The demo trades around the clock: one all-day regular session, so bars get indicators at
    # any hour (a real B3 calendar would call 3 a.m. trades off-session).
    settings = settings.model_copy(update={"smarttrade_sessions": DEMO_SESSIONS})
    backfill = await _backfill(stores, symbols, rate, backfill_s)
    stats.backfill_s = backfill.end_s - backfill.start_s if backfill else 0.0
    # A demo started over earlier data walks on from it with another seed: the same seed would
    # draw the same walk again, and a footprint would show the pattern twice.
    earlier = await stores.quotes.latest(symbols[0])
    walk_seed = seed if earlier is None else seed + int(earlier.timestamp * 1000)
    live = LiveSyntheticFeed(symbols, seed=walk_seed, rate=rate, backfill=backfill)
    feed = ChunkFeed(live.chunks, f"demo-{live.name}", live=True)
    await _setup_user(stores, symbols, stats)

    def progress(engine, dead, feed) -> None:  # type: ignore[no-untyped-def]
        stats.ingest = engine.stats
        stats.backfill_trades = live.backfilled
        on_tick(stats)

    def waiting(message: str) -> None:
        stats.waiting = message
        stats.last_wait = message or stats.last_wait
        on_tick(stats)

    async def keep_session() -> None:
        with contextlib.suppress(SmartTradeError):  # Redis away: the next round tries again
            await _guarded(stats, stores.sessions.touch(DEMO_USER))

    async def dashboard() -> None:
        """Read like a dashboard does, so `monitor` has per-store hit rates to show."""
        now = int(time.time())
        with contextlib.suppress(SmartTradeError):  # a refused read: the next round tries again
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

    # Stopped by an event, never cancelled mid-command: redis-py can turn that cancellation into
    # a retried ConnectionError, and the demo then waited forever for a reader that never ended.
    async with periodic(TOUCH_EVERY_S, keep_session), periodic(READ_EVERY_S, dashboard):
        result = await run_feed(
            topology,
            settings,
            feed,
            None,
            duration=duration,
            on_progress=progress,
            on_wait=waiting,
        )
    stats.ingest = result.stats
    stats.backfill_trades = live.backfilled
    return stats
