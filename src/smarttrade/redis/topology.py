"""The one seam between the stores and the servers: which client holds which store.

Everything above asks the topology for what it needs (a client for a store, "every primary" for
SCAN/INFO/flush, the commit script's select plan and the targets its analytics ops name) and
never reads a database number from settings itself; ingest passes them on without reading them.
REDIS_MODE picks one of three (``from_settings``): standalone, one server with a database per
store (the contract's six, or all stores on one when every REDIS_DB_* is equal); sentinel, the
same databases on whichever server the sentinels name master now; cluster, database 0 only with
hash-tagged keys (keyspace's cluster layout), each symbol's commit on its slot's primary.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import redis.asyncio as aioredis

from smarttrade.keyspace import Store, layout_for, use_layout
from smarttrade.redis.cluster import ClusterPools
from smarttrade.redis.connections import SOCKET_TIMEOUT_S, RedisPools, credentials
from smarttrade.redis.nodes import TopologyView
from smarttrade.redis.sentinel import SentinelPools
from smarttrade.settings import Settings, parse_addrs

# The stores an ingest commit writes: its own three, and those of its analytics ops.
COMMIT_STORES = (Store.QUOTES, Store.ORDERFLOW, Store.FOOTPRINT, Store.CALC)


def tls_kwargs(settings: Settings) -> dict[str, object]:
    """redis-py's TLS arguments from REDIS_TLS_* (empty when TLS is off): one place for every mode,
    so sentinels, cluster nodes and a rediss:// server verify the same CA."""
    if not settings.tls:
        return {}
    kwargs: dict[str, object] = {"ssl": True, "ssl_cert_reqs": "required"}
    if settings.redis_tls_ca:
        kwargs["ssl_ca_certs"] = str(settings.redis_tls_ca)
    if settings.redis_tls_cert and settings.redis_tls_key:
        kwargs["ssl_certfile"] = str(settings.redis_tls_cert)
        kwargs["ssl_keyfile"] = str(settings.redis_tls_key)
    return kwargs


def _cluster_seeds(settings: Settings) -> list[tuple[str, int]]:
    """REDIS_CLUSTER_NODES, or REDIS_URL's host as the one seed."""
    if settings.redis_cluster_nodes:
        return parse_addrs(settings.redis_cluster_nodes)
    parts = urlsplit(settings.redis_url or "")
    return [(parts.hostname or "127.0.0.1", parts.port or 6379)]


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
    """The clients of one topology: a pool set per mode (``pools``) and where each store lives."""

    def __init__(
        self, pools: RedisPools, placement: Placement, mode: str = "standalone", tls: bool = False
    ) -> None:
        self.pools = pools
        self.placement = placement
        self.mode = mode
        self.tls = tls

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        url: str | None = None,
        max_connections: int | None = None,
        socket_timeout: float = SOCKET_TIMEOUT_S,
    ) -> Topology:
        """The topology REDIS_MODE names; ``url`` is the standalone server (REDIS_URL or the
        embedded one). Sets the key layout every key function spells from here on."""
        use_layout(layout_for(settings.redis_mode))
        if settings.redis_mode == "standalone":
            if not url:
                raise ValueError("a standalone topology needs a server URL")
            return cls.standalone(url, settings, max_connections, socket_timeout)
        placement = Placement.from_settings(settings)
        limit = settings.redis_max_connections if max_connections is None else max_connections
        node = {**credentials(settings.redis_url), **tls_kwargs(settings)}
        pools: RedisPools | SentinelPools | ClusterPools
        if settings.redis_mode == "sentinel":
            dbs = {db for db, _ in placement.groups()}
            sentinels = parse_addrs(settings.redis_sentinels)
            # sentinels speak TLS when the nodes do; the nodes' password is not theirs
            pools = SentinelPools(
                sentinels,
                settings.redis_sentinel_master,
                dbs,
                limit,
                socket_timeout,
                node,
                tls_kwargs(settings),
            )
        else:
            pools = ClusterPools(_cluster_seeds(settings), limit, socket_timeout, node)
        return cls(pools, placement, settings.redis_mode, settings.tls)  # type: ignore[arg-type]

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
        tls = tls_kwargs(settings) if url.startswith("rediss://") else {}  # settings refuse the mix
        pools = RedisPools(url, dbs, limit, socket_timeout=socket_timeout, tls=tls)
        return cls(pools, placement, "standalone", bool(tls))

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
        """One client per server that holds keys, for server-wide INFO and SCAN: standalone and
        sentinel have one (its databases are told apart by client(store)); a cluster lists its
        primaries as they are now."""
        return self.pools.primaries()

    def node(self, addr: str) -> aioredis.Redis:
        """A plain client of one data node of a sentinel or cluster topology (``host:port`` as
        ``describe()`` names it), with the topology's TLS and credentials; closed with it."""
        node = getattr(self.pools, "node", None)
        if node is None:
            raise ValueError(f"a {self.mode} topology reaches its one server through client(store)")
        host, _, port = addr.rpartition(":")
        return node(host, int(port))

    async def describe(self) -> TopologyView:
        """The servers as they see themselves now (for `smarttrade status`)."""
        return await self.pools.describe()

    async def ping(self, on_loading: Callable[[str], None] | None = None) -> None:
        await self.pools.ping(on_loading)

    async def aclose(self) -> None:
        await self.pools.aclose()
