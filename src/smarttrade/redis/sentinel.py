"""Sentinel: the contract's databases on whichever server the sentinels name master now.

Each store's database gets a sentinel-managed pool (redis-py asks the sentinels for the master
before each new connection). Those pools only notice a failover when a connection fails; the
follower (``follow``) also listens for the sentinels' ``+switch-master`` and drops every pooled
connection at once, so nothing keeps writing to a demoted master that is still up.

The sentinels learn of a switch one after the other (the leader announces it; the others follow
its hello messages up to seconds later), so a reconnect right after ``+switch-master`` may ask a
sentinel that still names the old master, which a clean failover leaves up and writable until the
sentinels turn it into a replica: the writes in between would be lost when it resyncs. So the
address a switch names as old is refused as master (``_FollowingSentinel``) until a later switch
names it new again, or for DEMOTED_S (a fail-back the follower missed must not lock it out);
redis-py then asks the next sentinel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions as rexc
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from smarttrade.errors import RedisUnavailable
from smarttrade.redis.cancel import cancel_and_wait, raise_if_cancelled
from smarttrade.redis.connections import (
    FIRST_PING_S,
    REDIS_FAILURES,
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
SWITCH_CHANNEL = "+switch-master"  # a sentinel's announcement: "NAME OLD_IP OLD_PORT NEW_IP NEW_PORT"
FOLLOW_POLL_S = 1.0  # the follower's read timeout: how soon it notices aclose()
FOLLOW_BACKOFF_S = (0.1, 2.0)  # resubscription delay after a failed sentinel: first, largest
DEMOTED_S = 30.0  # how long a master announced as old is refused (the sentinels agree by then)


Addr = tuple[str, int]


class _FollowingSentinel(Sentinel):
    """redis-py's Sentinel that skips a sentinel naming a master the follower saw demoted."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.demoted: dict[Addr, float] = {}  # address -> when a switch named it old (monotonic)

    def is_demoted(self, addr: Addr) -> bool:
        since = self.demoted.get(addr)
        return since is not None and time.monotonic() - since < DEMOTED_S

    def check_master_state(self, state: dict, service_name: str) -> bool:  # type: ignore[type-arg]
        addr = (str(state["ip"]), int(state["port"]))
        return super().check_master_state(state, service_name) and not self.is_demoted(addr)


class _FollowingPool(SentinelConnectionPool):
    """A sentinel-managed pool that never hands out a connection to a demoted master.

    Dropping every connection on ``+switch-master`` was not always enough: in about 1 run in 16
    of the clean-failover test a write after the switch still went to the old master, on a
    connection the drop had missed, and was lost when that master resynced as a replica. So each
    checkout checks the connection's address first."""

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        conn = await super().get_connection(*args, **kwargs)
        manager: _FollowingSentinel = self.sentinel_manager
        if conn.is_connected and manager.is_demoted((str(conn.host), int(conn.port))):
            try:
                await conn.disconnect()
                await conn.connect()  # asks the sentinels for the master again
            except BaseException:
                await self.release(conn)
                raise
        return conn


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
        self.sentinel = _FollowingSentinel(
            sentinels,
            sentinel_kwargs={**connection_kwargs(socket_timeout), **(sentinel_kwargs or {})},
            **kwargs,
        )
        self._nodes = NodeClients(kwargs)
        self._clients: dict[int, aioredis.Redis] = {
            db: self.sentinel.master_for(
                master_name, db=db, max_connections=per_pool, connection_pool_class=_FollowingPool
            )
            for db in sorted(dbs)
        }
        self._sentinel_kwargs = {**connection_kwargs(socket_timeout), **(sentinel_kwargs or {})}
        self._follower: asyncio.Task[None] | None = None
        self.switches = 0  # +switch-master announcements for our master seen (tests, status)
        self._known: Addr | None = None  # the master as last seen by the follower

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
            except (*REDIS_FAILURES, TimeoutError) as exc:
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
                break
            except (RedisUnavailable, TimeoutError) as exc:
                if time.monotonic() - started > MASTER_WAIT_S:
                    reason = exc.reason if isinstance(exc, RedisUnavailable) else "no reply"
                    raise RedisUnavailable(self.url, f"the master does not answer: {reason}") from None
                if on_loading is not None:
                    on_loading(f"the master of {self.url} does not answer yet (a failover?); waiting")
                await asyncio.sleep(0.5)
        if self._follower is None or self._follower.done():
            self._follower = asyncio.create_task(self._follow(), name=f"sentinel-follow-{self.master_name}")

    async def drop_connections(self) -> None:
        """Disconnect every pooled connection, in use or not: the next command on each asks the
        sentinels for the master again (a connection in use fails its read, and its caller
        retries or resends)."""
        for client in self._clients.values():
            with contextlib.suppress(*REDIS_FAILURES):
                await client.connection_pool.disconnect()

    async def _follow(self) -> None:
        """Listen for ``+switch-master`` on any sentinel that answers and drop every connection
        when it names our master, so nothing keeps writing to a demoted master that is still up
        (a pool alone notices a failover only when a connection fails). After a lost sentinel it
        subscribes again elsewhere, and compares the master with the one it knew: a switch
        announced while it was not listening is followed too."""
        delay = FOLLOW_BACKOFF_S[0]
        turn = 0
        while True:
            raise_if_cancelled()
            host, port = self.sentinel_addrs[turn % len(self.sentinel_addrs)]
            turn += 1
            client = aioredis.Redis(host=host, port=port, **self._sentinel_kwargs)  # type: ignore[arg-type]
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(SWITCH_CHANNEL)
                    await self._check_master(client)
                    delay = FOLLOW_BACKOFF_S[0]
                    while True:
                        raise_if_cancelled()
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=FOLLOW_POLL_S
                        )
                        switch = _switch(message.get("data"), self.master_name) if message else None
                        if switch is not None:
                            log.info("sentinel: %s switched master %s -> %s", self.master_name, *switch)
                            self.switches += 1
                            self._switched(*switch)
                            await self.drop_connections()
                            await self._check_master(client)
            except asyncio.CancelledError:
                raise
            except REDIS_FAILURES as exc:
                log.debug("sentinel %s:%s: %s; subscribing elsewhere in %.1f s", host, port, exc, delay)
            finally:
                with contextlib.suppress(*REDIS_FAILURES):
                    await client.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, FOLLOW_BACKOFF_S[1])

    def _switched(self, old: Addr, new: Addr) -> None:
        self.sentinel.demoted[old] = time.monotonic()
        self.sentinel.demoted.pop(new, None)
        self._known = new

    async def _check_master(self, sentinel: aioredis.Redis) -> None:
        """Remember the master this sentinel names; a change since last time drops the pools."""
        seen = await sentinel.sentinel_get_master_addr_by_name(self.master_name)
        if not seen:
            return
        master = (_text(seen[0]), int(seen[1]))
        if self.sentinel.is_demoted(master):
            return  # a sentinel that has not heard of the switch yet
        if self._known is not None and master != self._known:
            self._switched(self._known, master)
            await self.drop_connections()
        self._known = master

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
                named = ":".join(_text(x) for x in seen) if seen else "none"
                nodes.append(NodeView(addr, "sentinel", link=named, healthy=named == master))
            except REDIS_FAILURES as exc:
                nodes.append(NodeView(addr, "sentinel", link=f"unreachable ({exc})", healthy=False))
        return TopologyView("sentinel", self.tls, nodes, self.master_name, master)

    async def aclose(self) -> None:
        await cancel_and_wait(self._follower)  # its cancel can come out as a ConnectionError
        self._follower = None
        await self._nodes.aclose()
        for client in self._clients.values():
            await client.aclose(close_connection_pool=True)
        with contextlib.suppress(*REDIS_FAILURES):
            await self.sentinel.aclose()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _switch(data: object, master_name: str) -> tuple[Addr, Addr] | None:
    """(old, new) from a ``+switch-master`` payload about ``master_name``, else None."""
    parts = _text(data).split()
    if len(parts) != 5 or parts[0] != master_name:
        return None
    return (parts[1], int(parts[2])), (parts[3], int(parts[4]))
