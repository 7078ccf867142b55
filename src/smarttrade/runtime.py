"""Wiring for a command: settings -> Redis (given, or the embedded default) -> pools -> stores."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import redis.exceptions as rexc

from smarttrade.keyspace import Store
from smarttrade.ops.published import HitPublisher
from smarttrade.redis.connections import RedisPools
from smarttrade.redis.embedded import EmbeddedHandle, attach_or_start
from smarttrade.settings import Settings, redact
from smarttrade.stores import Stores
from smarttrade.symbols import register as register_symbols


@dataclass
class Runtime:
    settings: Settings
    url: str
    pools: RedisPools
    stores: Stores
    embedded: EmbeddedHandle | None

    @property
    def where(self) -> str:
        """Where the data lives, for the first line a command prints."""
        if self.embedded is None:
            return redact(self.url)
        how = "started for this run" if self.embedded.owned else "already running"
        return f"{self.url} (embedded, {how}; data in {self.settings.smarttrade_data_dir})"


@asynccontextmanager
async def connect(settings: Settings) -> AsyncIterator[Runtime]:
    """Connect (starting the embedded server when REDIS_URL is unset) and check it answers."""
    if settings.smarttrade_symbols:
        register_symbols(settings.smarttrade_symbols)
    handle: EmbeddedHandle | None = None
    if settings.redis_url:
        url = settings.redis_url
    else:
        handle = attach_or_start(settings.smarttrade_data_dir, settings.smarttrade_maxmemory)
        url = handle.url
    pools = RedisPools(url, {settings.db(s) for s in Store}, settings.redis_max_connections)
    publisher: asyncio.Task[None] | None = None
    try:
        await pools.ping()
        stores = Stores(pools, settings)
        hits = HitPublisher(stores.by_store())
        publisher = asyncio.create_task(_publish_hits(hits, pools, settings))
        yield Runtime(settings, url, pools, stores, handle)
        await _publish_once(hits, pools, settings)
    finally:
        if publisher is not None:
            publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await publisher
        await pools.aclose()
        if handle is not None:
            handle.close()


PUBLISH_HITS_EVERY_S = 5.0


async def _publish_once(hits: HitPublisher, pools: RedisPools, settings: Settings) -> None:
    """Per-store hit counts for `monitor` and the exporter; a failure loses only the figures."""
    with contextlib.suppress(rexc.RedisError, OSError):
        await hits.publish(pools.client(settings.db(Store.QUOTES)))


async def _publish_hits(hits: HitPublisher, pools: RedisPools, settings: Settings) -> None:
    while True:
        await asyncio.sleep(PUBLISH_HITS_EVERY_S)
        await _publish_once(hits, pools, settings)
