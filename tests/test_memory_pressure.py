"""Under the default profile (volatile-lru) with a small maxmemory: market data is evicted, user
settings never are, and a writer facing a full server reports it and keeps going."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

from smarttrade.demo import run_demo
from smarttrade.errors import OutOfMemory
from smarttrade.models import Quote, Trade, encode
from smarttrade.redis.embedded import EmbeddedRedis
from smarttrade.redis.topology import Topology
from smarttrade.stores import Stores
from tests.conftest import settings_for, start_server

MAXMEMORY = 8 * 2**20


@pytest.fixture
def small_server(tmp_path: Path, binary: str) -> Iterator[EmbeddedRedis]:
    server = start_server(tmp_path, binary, maxmemory=str(MAXMEMORY))
    yield server
    server.stop(save=False)


@pytest.fixture
async def small_stores(small_server: EmbeddedRedis) -> AsyncIterator[Stores]:
    settings = settings_for(small_server.url)
    pools = Topology.standalone(small_server.url, settings, 12)
    yield Stores(pools, settings)
    await pools.aclose()


def info(server: EmbeddedRedis, section: str) -> dict:
    with redis.Redis(port=server.port) as r:
        return r.info(section)


async def test_flood_evicts_market_data_and_keeps_every_setting(
    small_server: EmbeddedRedis, small_stores: Stores
) -> None:
    assert info(small_server, "memory")["maxmemory_policy"] == "volatile-lru"
    for user in range(200):
        await small_stores.configs.set(f"user{user}", "theme", "dark")
        await small_stores.configs.set(f"user{user}", "symbols", ["DOL", "WIN", "WDO"])
    written = 0
    trades = [Trade(price=125000 + 5 * i, volume=1 + i, side="buy", time=0) for i in range(150)]
    for second in range(4000):
        ts = 1_700_000_000 + second
        batch = [Trade(price=t.price, volume=t.volume, side=t.side, time=ts) for t in trades]
        await small_stores.orderflow.append("WIN", batch)
        await small_stores.quotes.put(Quote(symbol="WIN", price=125000.0, volume=1, timestamp=ts))
        await small_stores.footprint.apply("WIN", {100_000 + 5 * second: (1, 1)})
        written += sum(len(encode(t)) for t in batch)
    assert written > 3 * MAXMEMORY  # order-flow JSON alone, far past the limit
    stats = info(small_server, "stats")
    assert stats["evicted_keys"] > 0
    assert info(small_server, "memory")["used_memory"] <= MAXMEMORY * 1.1
    settings_kept = await small_stores.configs.all("user0")
    assert settings_kept == {"symbols": ["DOL", "WIN", "WDO"], "theme": "dark"}
    with redis.Redis(port=small_server.port, db=5) as r:
        assert r.dbsize() == 400


async def test_full_server_is_reported_and_the_writer_survives(
    small_server: EmbeddedRedis, small_stores: Stores
) -> None:
    # permanent settings fill the server until it refuses: nothing is left to evict
    filler = "x" * 60_000
    written = 0
    with pytest.raises(OutOfMemory, match="refused a write: maxmemory reached"):
        for i in range(1000):
            await small_stores.configs.set("filler", f"blob{i}", filler)
            written += 1
    assert 0 < written < 1000
    # the demo's writer meets the same wall: it counts refusals and returns normally
    settings = settings_for(small_server.url)
    stats = await asyncio.wait_for(
        run_demo(small_stores.topology, settings, small_stores, ["DOL"], rate=50, duration=1.0), 30
    )
    assert stats.refused > 0
    assert "maxmemory reached" in stats.last_refusal
    assert "Redis is full" in stats.last_wait  # the engine backs off instead of dropping trades
    assert stats.ingest.trades + stats.ingest.abandoned > 0  # committed once there was room, or held back
    # and nothing already stored was lost
    with redis.Redis(port=small_server.port, db=5) as r:
        assert r.dbsize() >= written
