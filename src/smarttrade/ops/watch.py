"""Everything ``monitor`` shows and the exporter serves, read in one place.

A ``Watcher`` keeps the previous reading so each ``poll`` can give rates (ops/s, evictions/s,
per-store hit rates over the last interval) and count alerts as they fire.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from smarttrade.keyspace import Store
from smarttrade.ops import alerts, published
from smarttrade.ops.backup import newest_age_s
from smarttrade.ops.nodes import Servers, primary_admins
from smarttrade.ops.sample import Rates, Sample, node_rates, rates, take_all
from smarttrade.ops.server import Admin
from smarttrade.redis.topology import Topology
from smarttrade.settings import Settings


@dataclass(frozen=True, slots=True)
class StoreHits:
    store: Store
    hits: int  # published totals, all processes
    misses: int
    window_hits: int  # since the previous poll
    window_misses: int

    @property
    def ratio(self) -> float | None:
        total = self.hits + self.misses
        return self.hits / total if total else None

    @property
    def window_ratio(self) -> float | None:
        total = self.window_hits + self.window_misses
        return self.window_hits / total if total else None


@dataclass(frozen=True, slots=True)
class Observation:
    sample: Sample
    rates: Rates | None
    stores: list[StoreHits]
    ingesters: list[published.IngestFigures]
    checks: list[alerts.Check]
    backup_age_s: float | None
    taken_s: float  # how long the reading took
    node_rates: dict[str, Rates | None] = field(default_factory=dict)  # per primary, by address


@dataclass
class Watcher:
    """``source``: one server's Admin, or what gives the current servers (``Watcher.of``)."""

    source: Admin | Callable[[], Awaitable[Servers]]
    settings: Settings
    previous: Sample | None = None
    previous_hits: dict[Store, tuple[int, int]] = field(default_factory=dict)
    levels: dict[str, alerts.Level] = field(default_factory=dict)
    fired: dict[tuple[str, str], int] = field(default_factory=dict)  # (check, level) -> count
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # concurrent scrapes take turns

    @classmethod
    def of(cls, topology: Topology, settings: Settings, url: str) -> Watcher:
        """A watcher of every primary of ``topology``, followed across failovers."""
        return cls(lambda: primary_admins(topology, settings, url), settings)

    async def servers(self) -> Servers:
        if isinstance(self.source, Admin):
            return Servers.single(self.source)
        return await self.source()

    async def poll(self) -> Observation:
        async with self.lock:
            return await self._poll()

    async def _poll(self) -> Observation:
        started = time.perf_counter()
        servers = await self.servers()
        sample = await take_all(servers.admins)
        window = rates(self.previous, sample) if self.previous else None
        per_node = node_rates(self.previous, sample) if self.previous and sample.nodes else {}
        prev = None
        if self.previous is not None:
            p = self.previous
            prev = alerts.Previous(p.run_id, p.hits, p.misses, p.evicted)
        hits = await published.store_hits(servers.keys)
        stores = []
        for store, (h, m) in hits.items():
            ph, pm = self.previous_hits.get(store, (h, m))
            stores.append(StoreHits(store, h, m, max(0, h - ph), max(0, m - pm)))
        ingesters = await published.ingest_figures(servers.scans)
        backup_age = newest_age_s(self.settings.backup_dir)
        checks = alerts.evaluate(self.settings, sample, window, prev, backup_age)
        for check in checks:
            before = self.levels.get(check.name, alerts.Level.OK)
            if check.level > before:
                key = (check.name, check.level.label)
                self.fired[key] = self.fired.get(key, 0) + 1
            self.levels[check.name] = check.level
        self.previous, self.previous_hits = sample, hits
        return Observation(
            sample, window, stores, ingesters, checks, backup_age, time.perf_counter() - started, per_node
        )
