"""Everything ``monitor`` shows and the exporter serves, read in one place.

A ``Watcher`` keeps the previous reading so each ``poll`` can give rates (ops/s, evictions/s,
per-store hit rates over the last interval) and count alerts as they fire.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from smarttrade.keyspace import Store
from smarttrade.ops import alerts, published
from smarttrade.ops.backup import newest_age_s
from smarttrade.ops.sample import Rates, Sample, rates, take
from smarttrade.ops.server import Admin
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


@dataclass
class Watcher:
    admin: Admin
    settings: Settings
    previous: Sample | None = None
    previous_hits: dict[Store, tuple[int, int]] = field(default_factory=dict)
    levels: dict[str, alerts.Level] = field(default_factory=dict)
    fired: dict[tuple[str, str], int] = field(default_factory=dict)  # (check, level) -> count
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # concurrent scrapes take turns

    async def poll(self) -> Observation:
        async with self.lock:
            return await self._poll()

    async def _poll(self) -> Observation:
        started = time.perf_counter()
        sample = await take(self.admin)
        window = rates(self.previous, sample) if self.previous else None
        prev = None
        if self.previous is not None:
            p = self.previous
            prev = alerts.Previous(p.run_id, p.hits, p.misses, p.evicted)
        hits = await published.store_hits(self.admin.client)
        stores = []
        for store, (h, m) in hits.items():
            ph, pm = self.previous_hits.get(store, (h, m))
            stores.append(StoreHits(store, h, m, max(0, h - ph), max(0, m - pm)))
        ingesters = await published.ingest_figures(self.admin.client)
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
            sample, window, stores, ingesters, checks, backup_age, time.perf_counter() - started
        )
