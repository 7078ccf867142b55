"""Redis Cluster: one redis-py cluster client for every store (database 0), and a plain client per
primary for the commands that act on one server (SCAN, INFO, CONFIG, SCRIPT LOAD, FLUSHDB).

The cluster client follows MOVED/ASK and failovers by itself; the per-primary clients are built
from the slot map it holds now, so ``primaries()`` after a failover names the promoted replica.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Callable

import redis.asyncio as aioredis
import redis.exceptions as rexc
from redis.asyncio.cluster import ClusterNode, RedisCluster

from smarttrade.errors import RedisUnavailable
from smarttrade.redis.connections import (
    FIRST_PING_S,
    SOCKET_TIMEOUT_S,
    NodeClients,
    connection_kwargs,
    redis_errors,
)
from smarttrade.redis.nodes import NodeView, TopologyView

# How long start-up waits for a cluster that answers but is not serving every slot yet.
CLUSTER_OK_WAIT_S = 30.0


def _addr(host: str, port: int) -> str:
    return f"{host}:{port}"


class ClusterPools:
    """The cluster client and a client per current primary, within one connection budget."""

    def __init__(
        self,
        seeds: list[tuple[str, int]],
        max_connections: int,
        socket_timeout: float = SOCKET_TIMEOUT_S,
        node_kwargs: dict[str, object] | None = None,
    ) -> None:
        self.seeds = seeds
        self.url = "cluster://" + ",".join(_addr(h, p) for h, p in seeds)
        self.tls = bool((node_kwargs or {}).get("ssl"))
        self.max_connections = max_connections
        self._node_kwargs = {**connection_kwargs(socket_timeout), **(node_kwargs or {})}
        self.cluster = RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in seeds],
            max_connections=max(2, max_connections // 2),
            require_full_coverage=True,
            **self._node_kwargs,  # type: ignore[arg-type]
        )
        self._nodes = NodeClients(self._node_kwargs, max(2, max_connections // 8))

    def client(self, db: int) -> RedisCluster:
        if db != 0:
            raise ValueError(f"a cluster has database 0 only (asked for {db})")
        return self.cluster

    def node(self, host: str, port: int) -> aioredis.Redis:
        """A plain client of one node (cached): for commands a cluster client would fan out."""
        return self._nodes.get(host, port)

    def primaries(self) -> list[aioredis.Redis]:
        """A client per primary of the slot map the cluster client holds now (after ``ping``)."""
        return [self.node(n.host, n.port) for n in self.cluster.get_primaries()]

    async def ping(self, on_loading: Callable[[str], None] | None = None) -> None:
        """The cluster answers and serves every slot. A cluster still forming or failing over
        answers CLUSTERDOWN: wait for it a bounded time. No seed answering, or a seed that is not
        a cluster node, fails at once, naming REDIS_CLUSTER_NODES."""
        where = f"REDIS_CLUSTER_NODES={','.join(_addr(h, p) for h, p in self.seeds)}"
        started = time.monotonic()
        while True:
            try:
                await asyncio.wait_for(self.cluster.initialize(), FIRST_PING_S)
                with redis_errors(self.url):
                    await asyncio.wait_for(self.cluster.ping(), FIRST_PING_S)
                return
            except TimeoutError:
                raise RedisUnavailable(where, f"no reply within {FIRST_PING_S:g} s") from None
            except rexc.ClusterDownError as exc:
                if time.monotonic() - started > CLUSTER_OK_WAIT_S:
                    raise RedisUnavailable(where, f"the cluster is down ({exc})") from None
                if on_loading is not None:
                    on_loading(f"Redis Cluster at {where} is not serving every slot yet; waiting")
                await asyncio.sleep(0.5)
            except (rexc.RedisClusterException, rexc.ConnectionError, OSError) as exc:
                raise RedisUnavailable(where, _seed_reason(str(exc))) from None

    async def describe(self) -> TopologyView:
        """Primaries with their slot ranges and replicas with their link, from CLUSTER NODES of
        the first primary that answers (then the seeds): a dead node must not hide the others,
        and is shown by them as failed."""
        asked = [*self.primaries(), *(self.node(h, p) for h, p in self.seeds)]
        failure: Exception | None = None
        for client in asked:
            try:
                nodes = await client.execute_command("CLUSTER NODES")
            except (rexc.ConnectionError, rexc.TimeoutError, OSError) as exc:
                failure = exc
                continue
            return TopologyView("cluster", self.tls, cluster_node_views(nodes))
        raise RedisUnavailable(self.url, f"no node answered CLUSTER NODES ({failure})")

    async def aclose(self) -> None:
        await self._nodes.aclose()
        await self.cluster.aclose()


def _seed_reason(text: str) -> str:
    """redis-py's start-up failure in a line: not a cluster, or no seed reachable (and why)."""
    if "Cluster mode is not enabled" in text:
        return "a seed is not a cluster node (cluster mode is not enabled there); is REDIS_MODE right?"
    match = re.search(r"Error (\d+) connecting to ([^ ]+?)\.? ", text + " ")
    if match:
        return f"no seed node answers ({match[2]}: {os.strerror(int(match[1]))})"
    return text.splitlines()[0] if text else "no seed node answers"


def cluster_node_views(nodes: dict[str, dict[str, object]]) -> list[NodeView]:
    """redis-py's parsed CLUSTER NODES (addr -> flags, master_id, slots, connected) as views."""
    addr_of = {str(n["node_id"]): addr.partition("@")[0] for addr, n in nodes.items()}
    views: list[NodeView] = []
    for addr, n in nodes.items():
        flags = str(n["flags"]).split(",")
        healthy = bool(n.get("connected")) and not ({"fail", "fail?"} & set(flags))
        link = "connected" if n.get("connected") else "disconnected"
        if "master" in flags:
            ranges = [r if isinstance(r, list) else [r] for r in n.get("slots") or []]  # type: ignore[union-attr]
            slots = ",".join("-".join(dict.fromkeys(r)) for r in ranges)
            views.append(NodeView(addr.partition("@")[0], "primary", slots=slots, link=link, healthy=healthy))
        else:
            of = addr_of.get(str(n["master_id"]), "")
            views.append(NodeView(addr.partition("@")[0], "replica", of=of, link=link, healthy=healthy))
    views.sort(key=lambda v: (v.role != "primary", v.of, v.addr))
    return views
