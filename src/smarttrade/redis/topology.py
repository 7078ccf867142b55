"""The one seam between the stores and the servers: which client holds which store.

Everything above asks the topology for what it needs (a client for a store, "every primary" for
SCAN/INFO/flush, the commit script's select plan and the targets its analytics ops name) and
never reads a database number from settings itself; ingest passes them on without reading them.
Standalone is the only topology today: one server, a database per store (the contract's six, or
all stores on one when every REDIS_DB_* is equal); a cluster topology (database 0 only,
hash-tagged keys) is a matter of adding a constructor here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import redis.asyncio as aioredis

from smarttrade.keyspace import Store
from smarttrade.redis.connections import SOCKET_TIMEOUT_S, RedisPools
from smarttrade.settings import Settings

# The stores an ingest commit writes: its own three, and those of its analytics ops.
COMMIT_STORES = (Store.QUOTES, Store.ORDERFLOW, Store.FOOTPRINT, Store.CALC)


@dataclass(frozen=True, slots=True)
class Placement:
    """Which database each store lives in; known from settings alone (before connecting)."""

    dbs: Mapping[Store, int]

    @classmethod
    def from_settings(cls, settings: Settings) -> Placement:
        return cls({s: settings.db(s) for s in Store})

    def db(self, store: Store) -> int:
        return self.dbs[store]

    def shared_with(self, store: Store) -> list[Store]:
        """The other stores whose keys sit beside this one's (a flush must go by prefix then)."""
        return [s for s in Store if s is not store and self.dbs[s] == self.dbs[store]]

    @property
    def one_db(self) -> bool:
        return len(set(self.dbs.values())) == 1

    def groups(self) -> list[tuple[int, tuple[Store, ...]]]:
        """Each distinct database once, with the stores in it."""
        return [(db, tuple(s for s in Store if self.dbs[s] == db)) for db in sorted(set(self.dbs.values()))]


class Topology:
    """Standalone Redis: one connection pool per distinct database of the stores."""

    def __init__(self, pools: RedisPools, placement: Placement) -> None:
        self.pools = pools
        self.placement = placement

    @classmethod
    def standalone(
        cls,
        url: str,
        settings: Settings,
        max_connections: int | None = None,
        socket_timeout: float = SOCKET_TIMEOUT_S,
    ) -> Topology:
        placement = Placement.from_settings(settings)
        limit = settings.redis_max_connections if max_connections is None else max_connections
        dbs = {db for db, _ in placement.groups()}
        return cls(RedisPools(url, dbs, limit, socket_timeout=socket_timeout), placement)

    @property
    def url(self) -> str:
        return self.pools.url

    @property
    def max_connections(self) -> int:
        return self.pools.max_connections

    def db(self, store: Store) -> int:
        """The database a store lives in, for the commit script's SELECT and for display."""
        return self.placement.db(store)

    def dbs(self, *stores: Store) -> tuple[int, ...]:
        """The databases of several stores, in order (an analytics op names the one it writes)."""
        return tuple(self.placement.db(s) for s in stores)

    def client(self, store: Store) -> aioredis.Redis:
        return self.pools.client(self.placement.db(store))

    def commit_select(self) -> str:
        """The ingest commit's select plan, opaque to ingest (the script's ``dbs`` ARGV): the
        databases of quotes, order flow and footprint, or "" when those and the analytics ops'
        stores share one database, so the commit, sent on the quotes client, runs without SELECT."""
        if len({self.db(s) for s in COMMIT_STORES}) == 1:
            return ""
        return " ".join(str(self.db(s)) for s in (Store.QUOTES, Store.ORDERFLOW, Store.FOOTPRINT))

    def commit_target(self, store: Store) -> int:
        """What an analytics op inside the commit names to write into ``store`` (the script
        selects it when the plan is not empty): its database here; a cluster would name its slot's."""
        return self.db(store)

    @property
    def admin(self) -> aioredis.Redis:
        """The client for server-wide commands (INFO, CONFIG, SCRIPT, ACL)."""
        return self.client(Store.QUOTES)

    def shared_with(self, store: Store) -> list[Store]:
        return self.placement.shared_with(store)

    def primaries(self) -> list[aioredis.Redis]:
        """One client per server that holds keys, for server-wide INFO and SCAN: standalone has
        one (its databases are told apart by client(store)); a cluster would list its primaries."""
        return [self.admin]

    async def ping(self, on_loading: Callable[[str], None] | None = None) -> None:
        await self.pools.ping(on_loading)

    async def aclose(self) -> None:
        await self.pools.aclose()
