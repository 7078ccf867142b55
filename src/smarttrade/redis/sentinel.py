"""Sentinel: the contract's databases on whichever server the sentinels name master now.

Each store's database gets a sentinel-managed pool (redis-py asks the sentinels for the master
before each new connection). Those pools only notice a failover when a connection fails; the
follower (``follow``) also listens for the sentinels' ``+switch-master`` and drops every pooled
connection at once, so nothing keeps writing to a demoted master that is still up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import redis.asyncio as aioredis
import redis.exceptions as rexc
from redis.asyncio.sentinel import Sentinel

from smarttrade.errors import RedisUnavailable
from smarttrade.redis.connections import (
    FIRST_PING_S,
    SOCKET_TIMEOUT_S,
    NodeClients,
    connection_kwargs,
    one_line_reason,
    redis_errors,
)
from smarttrade.redis.nodes import NodeView, TopologyView, replication_views

log = logging.getLogger(__name__)

# How long start-up waits for the sentinels to name a master (one may be mid-failover).
MASTER_WAIT_S = 30.0


class SentinelPools:
    """A master client per database, found through the sentinels."""

    def __init__(
        self,
        sentinels: list[tuple[str, int]],
        master_name: str,
        dbs: set[int],
        max_connections: int,
        socket_timeout: float = SOCKET_TIMEOUT_S,
        node_kwargs: dict[str, object] | None = None,
        sentinel_kwargs: dict[str, object] | None = None,
    ) -> None:
        self.sentinel_addrs = sentinels
        self.master_name = master_name
        self.url = f"sentinel://{','.join(f'{h}:{p}' for h, p in sentinels)}/{master_name}"
        self.tls = bool((node_kwargs or {}).get("ssl"))
        per_pool = max(2, max_connections // max(1, len(dbs)))
        self.max_connections = per_pool * len(dbs)
        kwargs = {**connection_kwargs(socket_timeout), **(node_kwargs or {})}
        self.sentinel = Sentinel(
            sentinels,
            sentinel_kwargs={**connection_kwargs(socket_timeout), **(sentinel_kwargs or {})},
            **kwargs,
        )
        self._nodes = NodeClients(kwargs)
        self._clients: dict[int, aioredis.Redis] = {
            db: self.sentinel.master_for(master_name, db=db, max_connections=per_pool) for db in sorted(dbs)
        }

    def client(self, db: int) -> aioredis.Redis:
        try:
            return self._clients[db]
        except KeyError:
            raise ValueError(f"no pool for database {db}") from None

    def node(self, host: str, port: int) -> aioredis.Redis:
        """A plain client of one data node (the master or a replica), for per-node commands."""
        return self._nodes.get(host, port)

    def primaries(self) -> list[aioredis.Redis]:
        return [next(iter(self._clients.values()))]

    async def master(self) -> tuple[str, int]:
        """The master's address as the sentinels name it now."""
        with redis_errors(self.url):
            return await self.sentinel.discover_master(self.master_name)

    async def _named(self) -> None:
        """Fail at once, naming the setting, when no sentinel answers, an address is not a
        sentinel, or none of them knows REDIS_SENTINEL_MASTER (a typo would otherwise wait)."""
        where = f"REDIS_SENTINELS={','.join(f'{h}:{p}' for h, p in self.sentinel_addrs)}"
        reasons: list[str] = []
        for sentinel, (host, port) in zip(self.sentinel.sentinels, self.sentinel_addrs, strict=True):
            try:
                if await asyncio.wait_for(
                    sentinel.sentinel_get_master_addr_by_name(self.master_name), FIRST_PING_S
                ):
                    return
                reasons.append(f"{host}:{port} knows no master named {self.master_name!r}")
            except rexc.ResponseError as exc:
                reasons.append(
                    f"{host}:{port} is not a sentinel (it refused SENTINEL: {str(exc).split(',')[0]})"
                )
            except (rexc.RedisError, OSError, TimeoutError) as exc:
                reasons.append(f"{host}:{port}: {one_line_reason(exc)}")
        if all("knows no master" in r for r in reasons):
            raise RedisUnavailable(
                f"REDIS_SENTINEL_MASTER={self.master_name}", f"no sentinel knows it ({where}); check the name"
            )
        raise RedisUnavailable(where, "; ".join(reasons))

    async def ping(self, on_loading: Callable[[str], None] | None = None) -> None:
        """The sentinels name the master and it answers; a master being failed over is waited
        for (at most MASTER_WAIT_S)."""
        await self._named()
        started = time.monotonic()
        while True:
            try:
                with redis_errors(self.url):
                    await asyncio.wait_for(self.primaries()[0].ping(), FIRST_PING_S)
                return
            except (RedisUnavailable, TimeoutError) as exc:
                if time.monotonic() - started > MASTER_WAIT_S:
                    reason = exc.reason if isinstance(exc, RedisUnavailable) else "no reply"
                    raise RedisUnavailable(self.url, f"the master does not answer: {reason}") from None
                if on_loading is not None:
                    on_loading(f"the master of {self.url} does not answer yet (a failover?); waiting")
                await asyncio.sleep(0.5)

    async def describe(self) -> TopologyView:
        """The master and its replicas (its INFO replication), then each sentinel and the master
        it names (a split view shows here)."""
        host, port = await self.master()
        master = f"{host}:{port}"
        with redis_errors(self.url):
            info = await self.primaries()[0].info("replication")
        nodes = replication_views(master, info)
        for sentinel in self.sentinel.sentinels:
            kw = sentinel.connection_pool.connection_kwargs
            addr = f"{kw['host']}:{kw['port']}"
            try:
                seen = await sentinel.sentinel_get_master_addr_by_name(self.master_name)
                named = (
                    ":".join(x.decode() if isinstance(x, bytes) else str(x) for x in seen) if seen else "none"
                )
                nodes.append(NodeView(addr, "sentinel", link=named, healthy=named == master))
            except (rexc.RedisError, OSError) as exc:
                nodes.append(NodeView(addr, "sentinel", link=f"unreachable ({exc})", healthy=False))
        return TopologyView("sentinel", self.tls, nodes, self.master_name, master)

    async def aclose(self) -> None:
        await self._nodes.aclose()
        for client in self._clients.values():
            await client.aclose(close_connection_pool=True)
        with contextlib.suppress(rexc.RedisError, OSError):
            await self.sentinel.aclose()
