"""Is this gateway able to deliver? Redis answers, and a canary published through Redis reaches
this gateway's pub/sub reader within a bound (the hub's ``probe``): a gateway whose reader died
while Redis is fine must not look healthy to a load balancer.

Also the admins' ops summary (server, memory, clients, keys per store).
"""

from __future__ import annotations

import asyncio
import time

from smarttrade.errors import SmartTradeError, redact
from smarttrade.gateway.context import GatewayContext
from smarttrade.gateway.responses import Check, Health, OpsStatus, StoreKeysOut
from smarttrade.ops import health as ops_health
from smarttrade.redis.connections import REDIS_FAILURES

PROBE_TIMEOUT_S = 2.0  # a canary slower than this is a delivery failure
PING_TIMEOUT_S = 2.0
NO_HUB = "no delivery path: this gateway has no pub/sub reader (hub)"


async def redis_check(ctx: GatewayContext) -> Check:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(PING_TIMEOUT_S):
            await ctx.topology.ping()
    except TimeoutError:
        return Check(ok=False, detail=f"Redis did not answer PING within {PING_TIMEOUT_S:g} s")
    except SmartTradeError as exc:
        return Check(ok=False, detail=str(exc))
    ms = (time.perf_counter() - started) * 1000
    return Check(ok=True, detail="PING answered", ms=round(ms, 3))


async def delivery_check(ctx: GatewayContext) -> Check:
    """``hub.probe(timeout_s)`` publishes a canary and waits for this gateway's reader to see it:
    it returns (any value but False) when it arrived and raises TimeoutError (or returns False)
    when it did not in time."""
    hub = getattr(ctx, "hub", None)  # the fan-out hub, when this process runs one
    if hub is None:
        return Check(ok=False, detail=NO_HUB)
    started = time.perf_counter()
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S + 1.0):  # the hub's bound, and ours around it
            arrived = await hub.probe(PROBE_TIMEOUT_S)
    except TimeoutError:
        arrived = False
    except (SmartTradeError, *REDIS_FAILURES) as exc:
        return Check(ok=False, detail=f"canary not delivered: {exc}")
    ms = round((time.perf_counter() - started) * 1000, 3)
    if arrived is False:
        return Check(ok=False, detail=f"canary not delivered within {PROBE_TIMEOUT_S:g} s", ms=ms)
    return Check(ok=True, detail="canary delivered through Redis pub/sub", ms=ms)


async def health(ctx: GatewayContext) -> Health:
    redis, delivery = await asyncio.gather(redis_check(ctx), delivery_check(ctx))
    ok = redis.ok and delivery.ok
    reasons = "; ".join(c.detail for c in (redis, delivery) if not c.ok)
    return Health(
        ok=ok,
        code="ok" if ok else "unhealthy",
        message="Redis answers and delivery works" if ok else reasons,
        gateway_id=ctx.gateway_id,
        redis=redis,
        delivery=delivery,
    )


async def ops_status(ctx: GatewayContext) -> OpsStatus:
    st = await ops_health.status(ctx.topology, ctx.settings, ctx.topology.url)
    keys = await ops_health.store_keys(ctx.topology, ctx.settings)
    return OpsStatus(
        gateway_id=ctx.gateway_id,
        redis=redact(st.url),
        ping_ms=st.ping_ms,
        version=st.version,
        role=st.role,
        used_memory=st.used_memory,
        maxmemory=st.maxmemory,
        connected_clients=st.connected_clients,
        stores=[StoreKeysOut(store=k.store.value, db=k.db, keys=k.keys, expiring=k.expiring) for k in keys],
    )
