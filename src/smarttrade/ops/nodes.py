"""The servers an ops command acts on, one client each: every data node, or every primary.

A cluster client sends a server-wide command (CONFIG SET, INFO, SCAN, BGSAVE) to one node of its
choosing, and a sentinel-managed client only reaches the master; ``profile``, ``audit`` and
``backup`` must reach each node and the key commands each primary. The list comes from the
servers' own view (``topology.describe()``), never from settings alone. Sentinels are not data
nodes: they hold no keys and take no CONFIG of ours, so they are never in these lists.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from smarttrade.keyspace import Store
from smarttrade.ops.server import Admin, client_addr
from smarttrade.redis.nodes import NodeView
from smarttrade.redis.topology import Topology
from smarttrade.settings import Settings

DATA_ROLES = ("primary", "replica")


@dataclass(frozen=True, slots=True)
class DataNode:
    """One server that holds keys, as the topology sees it, with an Admin of its own."""

    view: NodeView
    admin: Admin

    @property
    def label(self) -> str:
        """``addr (role)`` for a per-node line; a standalone server is just its address."""
        return f"{self.view.addr} ({self.view.role})"


def store_clients(topology: Topology, store: Store) -> list[aioredis.Redis]:
    """The clients whose SCAN together covers a store: each primary of a cluster (database 0),
    else the store's own database client (standalone and sentinel: one server)."""
    if topology.mode == "cluster":
        return topology.primaries()
    return [topology.client(store)]


def node_url(addr: str, tls: bool) -> str:
    return f"{'rediss' if tls else 'redis'}://{addr}"


@dataclass(frozen=True, slots=True)
class Servers:
    """What a server-wide reading (monitor, alerts, /metrics) needs, as the topology is now."""

    admins: list[Admin]  # one per primary, each on a plain client of that server (INFO, CONFIG)
    keys: Any  # reads our own ops:* hashes: the cluster client routes each to its slot's node
    scans: list[aioredis.Redis]  # the clients whose SCAN together covers the keys

    @classmethod
    def single(cls, admin: Admin) -> Servers:
        return cls([admin], admin.client, [admin.client])


async def primary_admins(topology: Topology, settings: Settings, url: str) -> Servers:
    """An Admin per primary of a cluster (from the client's current slot map, so a failover is
    followed on the next call); sentinel: a plain client of the master the sentinels name now,
    so its figures carry the master's host:port, not the sentinel URL; standalone: the server's
    admin client."""
    if topology.mode == "sentinel":
        host, port = await topology.pools.master()  # type: ignore[attr-defined]
        addr = f"{host}:{port}"
        admin = Admin(topology.node(addr), settings, node_url(addr, topology.tls))
        return Servers([admin], topology.admin, [topology.admin])  # keys: the managed client
    if topology.mode != "cluster":
        return Servers.single(Admin(topology.admin, settings, url))
    clients = topology.primaries()
    if not clients:  # not connected yet (the exporter starts without the start-up PING)
        await topology.ping()
        clients = topology.primaries()
    admins = [Admin(c, settings, node_url(client_addr(c) or url, topology.tls)) for c in clients]
    return Servers(admins, topology.admin, clients)


@contextlib.asynccontextmanager
async def data_nodes(
    topology: Topology, settings: Settings, url: str, roles: tuple[str, ...] = DATA_ROLES
) -> AsyncIterator[list[DataNode]]:
    """Every node with one of ``roles`` (primaries and replicas by default), each with a plain
    client to that one server (the topology's, closed with it). Standalone: the one server at ``url``."""
    if topology.mode == "standalone":
        admin = Admin(topology.admin, settings, url)
        yield [DataNode(NodeView(admin.where(), "primary"), admin)]
        return
    described = await topology.describe()
    yield [
        DataNode(view, Admin(topology.node(view.addr), settings, node_url(view.addr, topology.tls)))
        for view in described.nodes
        if view.role in roles
    ]
