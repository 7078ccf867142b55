"""The first demo: a simple random-walk trade generator for DOL, WDO and WIN written to every store.

It stands in until the ingest engine and the synthetic B3 feed take over (issue 3).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal

from smarttrade.errors import OutOfMemory
from smarttrade.models import Quote, Trade
from smarttrade.stores import Stores
from smarttrade.symbols import spec_for

START_PRICES: dict[str, Decimal] = {
    "DOL": Decimal("5234.5"),
    "WDO": Decimal("5235.0"),
    "WIN": Decimal("125000"),
    "IND": Decimal("125010"),
}
DEMO_USER = "demo"
STEP_S = 0.1


@dataclass
class DemoStats:
    trades: int = 0
    volume: int = 0
    commits: int = 0
    refused: int = 0  # writes Redis refused for lack of memory
    last_refusal: str = ""
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


@dataclass
class _Walk:
    symbol: str
    level: int
    tick: int
    pv: Decimal = Decimal(0)  # session sum(price * qty), for the VWAP
    qty: int = 0


async def _guarded(stats: DemoStats, write: Awaitable[object]) -> bool:
    """Run one write; a full Redis is counted and reported, not fatal."""
    try:
        await write
    except OutOfMemory as exc:
        stats.refused += 1
        stats.last_refusal = str(exc)
        return False
    return True


async def _setup_user(stores: Stores, symbols: list[str], walk: _Walk, stats: DemoStats) -> None:
    spec = spec_for(walk.symbol)
    alert = {walk.symbol: {"price": spec.price(walk.level + 20 * walk.tick), "type": "above"}}
    await _guarded(stats, stores.sessions.open(DEMO_USER, uuid.uuid4().hex[:12], symbols))
    await _guarded(stats, stores.configs.set(DEMO_USER, "theme", "dark"))
    await _guarded(stats, stores.configs.set(DEMO_USER, "symbols", symbols))
    await _guarded(stats, stores.configs.set(DEMO_USER, "alerts", alert))


async def _write(stores: Stores, walk: _Walk, trades: list[Trade], stats: DemoStats) -> None:
    spec = spec_for(walk.symbol)
    last = trades[-1]
    quote = Quote(
        symbol=walk.symbol,
        price=last.price,
        volume=sum(int(t.volume) for t in trades),
        timestamp=last.time,
        bid=spec.price(walk.level - walk.tick),
        ask=spec.price(walk.level + walk.tick),
    )

    async def commit() -> None:
        await stores.orderflow.append(walk.symbol, trades)
        await stores.footprint.add_trades(walk.symbol, trades)
        await stores.quotes.put(quote)
        await stores.calc.put(walk.symbol, "vwap", float(walk.pv / walk.qty), timestamp=last.time)

    if await _guarded(stats, commit()):
        stats.commits += 1


async def run_demo(
    stores: Stores,
    symbols: list[str],
    rate: int,
    duration: float | None,
    on_tick: Callable[[DemoStats], None] = lambda _: None,
    seed: int | None = None,
) -> DemoStats:
    """Generate about ``rate`` trades/s per symbol until ``duration`` seconds pass (or forever)."""
    rng = random.Random(seed)
    walks = []
    for symbol in symbols:
        spec = spec_for(symbol)
        start = START_PRICES.get(spec.root, Decimal(100))
        walks.append(_Walk(symbol, spec.level(start), spec.tick_units))
    stats = DemoStats()
    await _setup_user(stores, symbols, walks[0], stats)
    per_step = max(1.0, rate * STEP_S)
    next_touch = time.monotonic() + 30
    while duration is None or stats.elapsed < duration:
        step_started = time.monotonic()
        now = time.time()
        jobs = []
        for walk in walks:
            spec = spec_for(walk.symbol)
            trades = []
            for _ in range(max(1, int(rng.expovariate(1 / per_step)))):
                walk.level += walk.tick * rng.choice((-1, 0, 0, 1))
                side = "buy" if rng.random() < 0.5 else "sell"
                volume = rng.choice((1, 1, 1, 2, 5, 10, 25))
                price = spec.price(walk.level)
                walk.pv += Decimal(str(price)) * volume
                walk.qty += volume
                trades.append(Trade(price=price, volume=volume, side=side, time=round(now, 3)))
            stats.trades += len(trades)
            stats.volume += sum(int(t.volume) for t in trades)
            jobs.append(_write(stores, walk, trades, stats))
        await asyncio.gather(*jobs)
        if time.monotonic() > next_touch:
            await _guarded(stats, stores.sessions.touch(DEMO_USER))
            next_touch += 30
        on_tick(stats)
        await asyncio.sleep(max(0.0, STEP_S - (time.monotonic() - step_started)))
    return stats
