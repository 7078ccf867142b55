"""Fan-out through a Sentinel failover with a real fault (issue 12): kill -9 the master while a feed
commits and a WebSocket client is subscribed. The hub's pub/sub connection is sentinel-managed
(gateway/subscriber.py ClassicSubscriber): its reconnect asks the sentinels for the master, so after
the promotion it reads from the new one; /healthz says 503 meanwhile, and the socket catches up by
offset: no offset of the stream is missing or delivered twice.

The feed is a trickle of small runs (tests/fanout_faults.py): a run that fails in the failover
window is followed by a new one, i.e. the feed is restarted after the failover (what the ingest
does itself during a failover is tests/test_ingest_sentinel's concern, not this one's).

Bounds (this 2-core machine; the harness's sentinels: down-after 1 s, failover ~2.3 s): 503 within
UNHEALTHY_WITHIN_S of the kill, 200 again within HEALTHY_WITHIN_S, new trades within
NEW_TRADES_WITHIN_S of the 200.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from smarttrade.redis.topology import Topology
from smarttrade.settings import Settings
from tests.fanout_faults import Collector, assert_every_offset_once, serve, trickle, watch_health
from tests.test_gateway_ws import subscribe
from tests.topologies import SentinelGroup

pytestmark = pytest.mark.topology
SYMBOL = "WIN"
UNHEALTHY_WITHIN_S = 3.0
HEALTHY_WITHIN_S = 20.0
NEW_TRADES_WITHIN_S = 10.0


def sentinel_settings(group: SentinelGroup) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        redis_mode="sentinel",
        redis_sentinels=",".join(group.sentinel_addrs),
        redis_sentinel_master=group.master_name,
    )


async def test_kill9_master_healthz_and_no_gap(sentinel_group: SentinelGroup, tmp_path: Path) -> None:
    settings = sentinel_settings(sentinel_group)
    topo = Topology.from_settings(settings)
    await topo.ping()
    stop = asyncio.Event()
    feeder: asyncio.Task | None = None
    try:
        async with serve(topo, settings) as gw, httpx.AsyncClient(base_url=gw.url, timeout=5) as http:
            assert (await http.get("/healthz")).status_code == 200
            async with connect(gw.ws_url()) as ws:
                await subscribe(ws, [SYMBOL], ["trades"])
                feeder = asyncio.create_task(trickle(topo, settings, tmp_path, stop, SYMBOL))
                got = Collector(ws)
                await got.wait_more(0, 10)
                old = sentinel_group.current_master()
                sentinel_group.primary.kill9()
                killed = time.monotonic()
                health = await watch_health(http, killed, UNHEALTHY_WITHIN_S, HEALTHY_WITHIN_S)
                promoted = sentinel_group.current_master()
                assert promoted != old, f"the sentinels still name {old}"
                new_trades_s = await got.wait_more(len(got.offsets()), NEW_TRADES_WITHIN_S)
                stop.set()
                await feeder
                await asyncio.sleep(1.5)  # the last commits reach the socket
                await got.aclose()
        delivered = got.offsets()
        stream = await assert_every_offset_once(topo, SYMBOL, delivered)
        figures = {"new_trades_s": round(new_trades_s, 2), "delivered": len(delivered), "stream": stream}
        print(json.dumps({**health.figures(), **figures}))
    finally:
        stop.set()
        if feeder is not None:
            await asyncio.gather(feeder, return_exceptions=True)
        await topo.aclose()
