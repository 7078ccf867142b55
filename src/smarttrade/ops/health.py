"""Status and per-store key statistics, from INFO (server, memory, clients, keyspace)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from smarttrade.keyspace import SPECS, Store
from smarttrade.redis.connections import RedisPools, redis_errors
from smarttrade.settings import Settings


@dataclass(frozen=True, slots=True)
class StoreLayout:
    store: Store
    title: str
    db: int
    pattern: str
    ttl: int | None


def layout(settings: Settings) -> list[StoreLayout]:
    return [StoreLayout(s.store, s.title, settings.db(s), s.pattern, settings.ttl(s)) for s in SPECS.values()]


@dataclass
class Status:
    url: str
    ping_ms: float
    version: str
    mode: str
    role: str
    used_memory: int
    used_memory_human: str
    maxmemory: int
    maxmemory_policy: str
    connected_clients: int
    stores: list[StoreLayout] = field(default_factory=list)


async def status(pools: RedisPools, settings: Settings, shown_url: str) -> Status:
    client = pools.client(settings.db(Store.QUOTES))
    with redis_errors(pools.url):
        started = time.perf_counter()
        await client.ping()
        ping_ms = (time.perf_counter() - started) * 1000
        info: dict[str, Any] = await client.info()
    return Status(
        url=shown_url,
        ping_ms=round(ping_ms, 3),
        version=str(info.get("redis_version", "?")),
        mode=str(info.get("redis_mode", "standalone")),
        role=str(info.get("role", "?")),
        used_memory=int(info.get("used_memory", 0)),
        used_memory_human=str(info.get("used_memory_human", "?")),
        maxmemory=int(info.get("maxmemory", 0)),
        maxmemory_policy=str(info.get("maxmemory_policy", "?")),
        connected_clients=int(info.get("connected_clients", 0)),
        stores=layout(settings),
    )


@dataclass(frozen=True, slots=True)
class StoreKeys:
    store: Store
    title: str
    db: int
    keys: int
    expiring: int
    shared_with: tuple[str, ...]  # other stores on the same db (INFO cannot split them)

    @property
    def persistent(self) -> int:
        return self.keys - self.expiring


async def store_keys(pools: RedisPools, settings: Settings) -> list[StoreKeys]:
    """Keys per store by name, from INFO keyspace (counts are per database)."""
    with redis_errors(pools.url):
        info: dict[str, Any] = await pools.client(settings.db(Store.QUOTES)).info("keyspace")
    rows = []
    for row in layout(settings):
        db_info = info.get(f"db{row.db}") or {}
        others = tuple(o.title for o in layout(settings) if o.db == row.db and o.store != row.store)
        rows.append(
            StoreKeys(
                store=row.store,
                title=row.title,
                db=row.db,
                keys=int(db_info.get("keys", 0)),
                expiring=int(db_info.get("expires", 0)),
                shared_with=others,
            )
        )
    return rows
