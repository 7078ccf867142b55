"""Wiring for a command: settings -> Redis (given, or the embedded default) -> topology -> stores."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from smarttrade.errors import redact
from smarttrade.keyspace import Store
from smarttrade.ops.published import HitPublisher
from smarttrade.redis.connections import REDIS_FAILURES
from smarttrade.redis.embedded import EmbeddedHandle, attach_or_start
from smarttrade.redis.periodic import periodic
from smarttrade.redis.topology import Topology
from smarttrade.settings import Settings
from smarttrade.stores import Stores
from smarttrade.stores.instruments import InstrumentRegistry
from smarttrade.symbols import register as register_symbols


@dataclass
class Runtime:
    settings: Settings
    url: str
    topology: Topology
    stores: Stores
    embedded: EmbeddedHandle | None

    @property
    def where(self) -> str:
        """Where the data lives, for the first line a command prints."""
        if self.embedded is None:
            return redact(self.url)
        how = "started for this run" if self.embedded.owned else "already running"
        return f"{self.url} (embedded, {how}; data in {self.settings.smarttrade_data_dir})"


PUBLISH_HITS_EVERY_S = 5.0


@asynccontextmanager
async def connect(
    settings: Settings, check: bool = True, on_loading: Callable[[str], None] | None = None
) -> AsyncIterator[Runtime]:
    """Connect (starting the embedded server when REDIS_URL is unset) and, unless ``check`` is
    False, make sure it answers (the exporter starts anyway and reports ``redis_up 0``).

    A server still loading its dataset (just started, or restarted) is waited for, with progress
    lines to ``on_loading``: the same for the embedded server, one attached to and REDIS_URL.
    """
    if settings.smarttrade_symbols:
        register_symbols(settings.smarttrade_symbols, " (SMARTTRADE_SYMBOLS)")
    handle: EmbeddedHandle | None = None
    url = settings.redis_url
    if not url and settings.redis_mode == "standalone":
        handle = attach_or_start(settings.smarttrade_data_dir, settings.smarttrade_maxmemory)
        url = handle.url
    topology = Topology.from_settings(settings, url)
    url = topology.url
    try:
        if check:
            await topology.ping(on_loading)
            await InstrumentRegistry(topology).load()  # what earlier ingests declared
        stores = Stores(topology, settings)
        hits = HitPublisher(stores.by_store())
        client = topology.client(Store.QUOTES)
        # Per-store hit counts for `monitor` and the exporter; a failure loses only the figures.
        async with periodic(PUBLISH_HITS_EVERY_S, lambda: hits.publish(client)):
            yield Runtime(settings, url, topology, stores, handle)
        with contextlib.suppress(*REDIS_FAILURES):
            await hits.publish(client)
    finally:
        await topology.aclose()
        if handle is not None:
            handle.close()
