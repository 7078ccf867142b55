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

import redis.asyncio as aioredis

from smarttrade.keyspace import Store
from smarttrade.ops.server import Admin
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
