"""Who is connected: the contract's ``session:USER_ID`` kept true across several sockets per user
on several gateways, and cleaned up after a gateway dies (docs/keyspace.md, "Gateway presence").

Per user, a hash ``sockets:USER_ID`` (socket_id -> {"gateway","symbols","connected_at"}) sits beside
the session key; every change rewrites both in one WATCH/MULTI transaction, so the session always
shows the newest socket and the union of the sockets' symbols, and the last socket's close deletes
both. Per gateway, ``gateway:alive:GW`` (TTL 15 s, renewed every 5 s) and ``gateway:sockets:GW``
(the user/socket pairs it holds). A gateway killed with -9 stops renewing; when its liveness key
expires, Redis announces it (notify-keyspace-events Ex) and any other gateway removes its sockets.
A periodic SCAN sweep catches what a missed notification leaves. Bound: a dead gateway's sockets
are gone at most GATEWAY_ALIVE_TTL + SWEEP_EVERY_S (45 s) after its last renewal, typically ~15 s.
Sessions of users with no activity expire with their TTL (redis_ttl_sessions) in any case.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable

from redis.asyncio.client import Pipeline

from smarttrade.errors import SmartTradeError
from smarttrade.keyspace import (
    GATEWAY_ALIVE_PREFIX,
    GATEWAY_ALIVE_RENEW_S,
    GATEWAY_ALIVE_TTL,
    GATEWAY_SOCKETS_PREFIX,
    Store,
    expired_channel,
    gateway_alive_key,
    gateway_sockets_key,
    glob_escape,
    session_key,
    sockets_key,
)
from smarttrade.models import Session, encode
from smarttrade.redis.cancel import cancel_and_wait, raise_if_cancelled
from smarttrade.redis.connections import REDIS_FAILURES
from smarttrade.redis.topology import Topology
from smarttrade.stores import Stores

log = logging.getLogger(__name__)
SWEEP_EVERY_S = 30.0
SCAN_COUNT = 500
MAX_SUBSCRIPTIONS = 500  # the contract's Session.subscriptions bound
Sockets = dict[str, dict]


class Presence:
    """Sessions and sockets of one gateway process; a Service (start/stop) run by the hub."""

    def __init__(self, topology: Topology, stores: Stores, gateway_id: str) -> None:
        self.redis = topology.client(Store.SESSIONS)
        self.ttl = stores.sessions.ttl or 3600
        self.gateway_id = gateway_id
        self.expired_channel = expired_channel(topology.db(Store.SESSIONS))
        self._tasks: list[asyncio.Task] = []
        self._cleanups: set[asyncio.Task] = set()
        self.cleaned = 0  # dead gateways this process cleaned up

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._every(GATEWAY_ALIVE_RENEW_S, self._renew)),
            asyncio.create_task(self._every(SWEEP_EVERY_S, self.sweep)),
        ]
        with contextlib.suppress(*REDIS_FAILURES, SmartTradeError):  # Redis away: the loops retry
            await self._renew()
            await self.sweep()  # what a gateway that died before this start left

    async def stop(self) -> None:
        await cancel_and_wait(*self._tasks)
        for task in self._cleanups:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(*REDIS_FAILURES, SmartTradeError):
            await self.cleanup(self.gateway_id)  # a clean stop closes its sockets' sessions
            await self.redis.delete(gateway_alive_key(self.gateway_id))

    async def _every(self, period: float, fn: Callable[[], object]) -> None:
        while True:
            raise_if_cancelled()
            await asyncio.sleep(period)
            try:
                await fn()  # type: ignore[misc]
            except (*REDIS_FAILURES, SmartTradeError) as exc:
                log.warning("presence: %s", exc)

    async def _renew(self) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(gateway_alive_key(self.gateway_id), str(time.time()), ex=GATEWAY_ALIVE_TTL)
            pipe.expire(gateway_sockets_key(self.gateway_id), self.ttl)
            await pipe.execute()

    # --- one socket's life -------------------------------------------------------------------

    async def open(self, user: str, socket_id: str) -> None:
        info = {"gateway": self.gateway_id, "symbols": [], "connected_at": time.time()}
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.sadd(gateway_sockets_key(self.gateway_id), f"{user}\t{socket_id}")
            pipe.expire(gateway_sockets_key(self.gateway_id), self.ttl)
            await pipe.execute()
        await self._change(user, lambda socks: socks.__setitem__(socket_id, info))

    async def set_symbols(self, user: str, socket_id: str, symbols: Iterable[str]) -> None:
        syms = list(symbols)

        def change(socks: Sockets) -> None:
            if socket_id in socks:
                socks[socket_id]["symbols"] = syms

        await self._change(user, change)

    async def close(self, user: str, socket_id: str) -> None:
        await self._change(user, lambda socks: socks.pop(socket_id, None))
        await self.redis.srem(gateway_sockets_key(self.gateway_id), f"{user}\t{socket_id}")

    async def touch(self, user: str) -> None:
        """Activity: keep the user's session and sockets alive for another TTL."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.expire(session_key(user), self.ttl)
            pipe.expire(sockets_key(user), self.ttl)
            await pipe.execute()

    async def _change(self, user: str, change: Callable[[Sockets], object]) -> None:
        skey, session = sockets_key(user), session_key(user)

        async def step(pipe: Pipeline) -> None:
            raw = await pipe.hgetall(skey)
            socks: Sockets = {}
            for k, v in raw.items():
                with contextlib.suppress(ValueError):
                    socks[k.decode()] = json.loads(v)
            before = {k: json.dumps(v, sort_keys=True) for k, v in socks.items()}
            change(socks)
            after = {k: json.dumps(v, sort_keys=True) for k, v in socks.items()}
            pipe.multi()
            gone = [k for k in raw if k.decode() not in after]
            if gone:
                pipe.hdel(skey, *gone)
            changed = {k: v for k, v in after.items() if before.get(k) != v}
            if changed:
                pipe.hset(skey, mapping=changed)
            if socks:
                newest = max(socks, key=lambda k: socks[k].get("connected_at", 0))
                union = list(dict.fromkeys(s for v in socks.values() for s in v.get("symbols", [])))
                value = Session(
                    user_id=user,
                    socket_id=newest,
                    connected_at=socks[newest].get("connected_at"),
                    subscriptions=union[:MAX_SUBSCRIPTIONS],
                )
                pipe.set(session, encode(value), ex=self.ttl)
                pipe.expire(skey, self.ttl)
            else:
                pipe.delete(skey, session)

        await self.redis.transaction(step, skey, session)

    # --- dead gateways -------------------------------------------------------------------------

    def on_expired(self, data: bytes) -> None:
        """A key of the sessions db expired: a gateway's liveness key means that gateway is dead."""
        key = data.decode(errors="replace")
        prefix = GATEWAY_ALIVE_PREFIX + ":"
        if key.startswith(prefix) and key[len(prefix) :] != self.gateway_id:
            task = asyncio.create_task(self._cleanup_logged(key[len(prefix) :]))
            self._cleanups.add(task)
            task.add_done_callback(self._cleanups.discard)

    async def _cleanup_logged(self, gateway_id: str) -> None:
        try:
            await self.cleanup(gateway_id)
        except (*REDIS_FAILURES, SmartTradeError) as exc:
            log.warning("presence: cleaning up %s: %s", gateway_id, exc)

    async def cleanup(self, gateway_id: str) -> int:
        """Remove every socket a gateway held; returns how many."""
        key = gateway_sockets_key(gateway_id)
        members = await self.redis.smembers(key)
        for member in members:
            user, _, socket_id = member.decode().partition("\t")
            await self._change(user, lambda socks, sid=socket_id: socks.pop(sid, None))
        await self.redis.delete(key)
        if gateway_id != self.gateway_id and members:
            self.cleaned += 1
        return len(members)

    async def sweep(self) -> None:
        """The fallback: any gateway's socket set whose liveness key is gone."""
        prefix = GATEWAY_SOCKETS_PREFIX + ":"
        async for raw in self.redis.scan_iter(match=glob_escape(prefix) + "*", count=SCAN_COUNT):
            gid = raw.decode()[len(prefix) :]
            if gid != self.gateway_id and not await self.redis.exists(gateway_alive_key(gid)):
                await self.cleanup(gid)
