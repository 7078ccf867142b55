"""Status and per-store key statistics, from INFO (server, memory, clients, keyspace)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from smarttrade.keyspace import SPECS, Store, current_layout, layout_pattern
from smarttrade.ops import keys
from smarttrade.ops.nodes import store_clients
from smarttrade.redis.connections import redis_errors
from smarttrade.redis.nodes import TopologyView
from smarttrade.redis.topology import Topology
from smarttrade.settings import Settings


@dataclass(frozen=True, slots=True)
class StoreLayout:
    store: Store
    title: str
    db: int
    pattern: str
    ttl: int | None


def layout(topology: Topology, settings: Settings) -> list[StoreLayout]:
    """Each store's database and key pattern as this mode spells them (hash-tagged on a cluster)."""
    keys_as = current_layout()
    return [
        StoreLayout(s.store, s.title, topology.db(s.store), layout_pattern(s, keys_as), settings.ttl(s))
        for s in SPECS.values()
    ]


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
    topology: TopologyView | None = None  # the servers as they see themselves (describe())


async def status(topology: Topology, settings: Settings, shown_url: str) -> Status:
    """PING and INFO of the first primary; memory and clients summed over every primary (a
    cluster's data is their sum); the topology as the servers describe it."""
    primaries = topology.primaries()
    with redis_errors(topology.url):
        started = time.perf_counter()
        await primaries[0].ping()
        ping_ms = (time.perf_counter() - started) * 1000
        info: dict[str, Any] = await primaries[0].info()
        for other in primaries[1:]:
            more = await other.info()
            for name in ("used_memory", "maxmemory", "connected_clients"):
                info[name] = int(info.get(name, 0)) + int(more.get(name, 0))
        if len(primaries) > 1:
            info["used_memory_human"] = f"{int(info['used_memory']) / 2**20:.2f}M"
    view = await topology.describe()
    return Status(
        url=shown_url,
        ping_ms=round(ping_ms, 3),
        version=str(info.get("redis_version", "?")),
        mode=topology.mode,  # sentinel: the master itself says standalone
        role=str(info.get("role", "?")),
        used_memory=int(info.get("used_memory", 0)),
        used_memory_human=str(info.get("used_memory_human", "?")),
        maxmemory=int(info.get("maxmemory", 0)),
        maxmemory_policy=str(info.get("maxmemory_policy", "?")),
        connected_clients=int(info.get("connected_clients", 0)),
        stores=layout(topology, settings),
        topology=view,
    )


@dataclass(frozen=True, slots=True)
class StoreKeys:
    store: Store
    title: str
    db: int
    keys: int  # the store's own: INFO keyspace, or counted by prefix in a shared db
    expiring: int
    shared_with: tuple[str, ...]  # other stores on the same db
    db_keys: int  # every key in the db (what a memory estimate from a db-wide sample scales to)

    @property
    def persistent(self) -> int:
        return self.keys - self.expiring


async def store_keys(topology: Topology, settings: Settings) -> list[StoreKeys]:
    """Keys per store by name: INFO keyspace for a store alone in its database; in a database
    shared with other stores (every REDIS_DB_* = 0) a SCAN of the store's prefixes."""
    info: dict[str, Any] = {}
    with redis_errors(topology.url):
        for primary in topology.primaries():  # a cluster's db0 is the sum of its primaries'
            for name, figures in (await primary.info("keyspace")).items():
                into = info.setdefault(name, {"keys": 0, "expires": 0})
                for field_name in ("keys", "expires"):
                    into[field_name] += int(figures.get(field_name, 0))
    rows = []
    for row in layout(topology, settings):
        db_info = info.get(f"db{row.db}") or {}
        others = tuple(SPECS[o].title for o in topology.shared_with(row.store))
        db_keys = count = int(db_info.get("keys", 0))
        expiring = int(db_info.get("expires", 0))
        if others:
            count, expiring = await keys.count_keys(
                store_clients(topology, row.store), topology.url, row.store
            )
        rows.append(
            StoreKeys(
                store=row.store,
                title=row.title,
                db=row.db,
                keys=count,
                expiring=expiring,
                shared_with=others,
                db_keys=db_keys,
            )
        )
    return rows
