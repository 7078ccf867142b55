"""Sentinel failover with real processes: a primary, a replica and 3 sentinels (tests/topologies.py).

- kill -9 of the primary during a replay: the sentinels promote the replica, the ingester waits
  and resumes by itself, and the stores equal an uninterrupted run (test_ingest_reliability's);
- the write pause and what a failover loses, without WAIT and with REDIS_WAIT_REPLICAS=1
  (benchmarks/failover.py measures both);
- a clean SENTINEL FAILOVER (the old master stays up as a replica): the client follows
  +switch-master, and the next writes reach the new master with no error seen by the caller.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
import redis
from benchmarks.failover import checkpoints, failover_pause, sentinel_settings

from smarttrade.keyspace import Store
from smarttrade.redis.sentinel import SentinelPools
from smarttrade.redis.topology import Topology
from smarttrade.settings import parse_addrs
from tests.test_ingest_reliability import (  # noqa: F401  (expected and make_server are fixtures)
    REPLAY,
    dump,
    expected,
    ingest,
    make_server,
    summary,
)
from tests.topologies import SentinelGroup

pytestmark = pytest.mark.topology

PAUSE_BOUND_S = 30.0  # generous: down-after 1 s + election, on a loaded 2-core machine


def sentinel_env(group: SentinelGroup) -> dict[str, str]:
    return {
        "REDIS_MODE": "sentinel",
        "REDIS_SENTINELS": ",".join(group.sentinel_addrs),
        "REDIS_SENTINEL_MASTER": group.master_name,
    }


@pytest.mark.one_binary
def test_kill_9_of_the_primary_mid_replay_changes_nothing(
    sentinel_group: SentinelGroup,
    expected: dict[str, object],  # noqa: F811
    tmp_path: Path,
) -> None:
    group = sentinel_group
    old = group.primary.addr
    err_path = tmp_path / "stderr.txt"
    with err_path.open("w") as err:
        # REDIS_URL gives only credentials in sentinel mode (none here)
        proc = ingest(f"redis://{group.primary.addr}", tmp_path, *REPLAY, stderr=err, env=sentinel_env(group))
        deadline = time.monotonic() + 120
        while sum(checkpoints(group.primary.port).values()) < 12 and time.monotonic() < deadline:
            assert proc.poll() is None, err_path.read_text()
            time.sleep(0.01)
        group.primary.kill9()
        new = group.wait_failover(old)
        stdout, _ = proc.communicate(timeout=300)
    log = err_path.read_text()
    assert proc.returncode == 0, log
    assert "waiting for Redis" in log
    assert new == group.replica.addr
    assert summary(stdout)["trades"] > 0
    got = dump(group.replica)
    assert got.keys() == expected.keys()
    assert got == expected


@pytest.mark.one_binary
@pytest.mark.parametrize("wait_replicas", [0, 1])
def test_failover_pause_and_loss(binary: str, tmp_path: Path, wait_replicas: int) -> None:
    """Kill to the first acknowledged commit on the new master, and acknowledged commits the
    replica never got: any number without WAIT (the replay rewinds and gets them back), none
    with WAIT 1."""
    figures = asyncio.run(failover_pause(binary, tmp_path, wait_replicas, trades=600_000))
    print(f"failover ({os.path.basename(binary)}, WAIT {wait_replicas}): {figures}")
    assert 0 < figures["pause_s"] < PAUSE_BOUND_S, figures  # type: ignore[operator]
    assert figures["trades"] > 0
    if wait_replicas:
        assert figures["lost_commits"] == 0, figures
    final: dict[str, int] = figures["final_checkpoints"]  # type: ignore[assignment]
    assert final and min(final.values()) > 0


async def test_switch_master_is_followed_without_an_error(sentinel_group: SentinelGroup) -> None:
    """SENTINEL FAILOVER: the old master stays up and turns replica; writes carry on, on the new one."""
    group = sentinel_group
    settings = sentinel_settings(group)
    topology = Topology.from_settings(settings)
    await topology.ping()
    pools = topology.pools
    assert isinstance(pools, SentinelPools)
    client = topology.client(Store.QUOTES)
    db = topology.db(Store.QUOTES)
    try:
        await client.set("probe:before", "1")
        old = group.primary.addr
        with group.sentinels[0].client() as s:
            s.execute_command("SENTINEL", "FAILOVER", group.master_name)
        written, deadline = 0, time.monotonic() + 30
        while (pools.switches == 0 or written < 50) and time.monotonic() < deadline:
            await client.set(f"probe:{written}", written)  # an error here fails the test
            written += 1
            await asyncio.sleep(0.01)
        assert pools.switches >= 1
        new = await asyncio.to_thread(group.wait_failover, old)
        await client.set("probe:after", "1")
        assert f"{(await pools.master())[0]}:{(await pools.master())[1]}" == new
        with redis.Redis(port=int(new.rpartition(":")[2]), db=db) as r:
            assert r.get("probe:after") == b"1"
            assert r.info("replication")["role"] == "master"
        # the sentinels turn the old master (still up) into a replica some seconds later; our
        # write after the switch must survive that resync, so it must have gone to the new one
        deadline = time.monotonic() + 30
        with group.primary.client() as r:
            while r.info("replication")["role"] != "slave" and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert r.info("replication")["role"] == "slave"  # demoted, still up
            while r.info("replication").get("master_link_status") != "up" and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
        await client.set("probe:demoted", "1")  # still no error, after the conversion
        with redis.Redis(port=int(new.rpartition(":")[2]), db=db) as r:
            assert r.get("probe:after") == b"1" and r.get("probe:demoted") == b"1"
    finally:
        await topology.aclose()


@pytest.mark.one_binary  # our pool's check, not the server's version
async def test_a_pooled_connection_to_a_demoted_master_is_not_used(sentinel_group: SentinelGroup) -> None:
    """The pool checks each connection it hands out: one still connected to the master a switch
    named old reconnects through the sentinels first, even with no follower to drop it."""
    group = sentinel_group
    pools = SentinelPools(parse_addrs(",".join(group.sentinel_addrs)), group.master_name, {0}, 4)
    client = pools.client(0)  # no start(): no follower, so nothing drops the pool on the switch
    try:
        await client.set("probe:before", "1")  # a pooled connection to the old master
        old = group.primary.addr
        with group.sentinels[0].client() as s:
            s.execute_command("SENTINEL", "FAILOVER", group.master_name)
        new = await asyncio.to_thread(group.wait_failover, old)
        pools.sentinel.demoted[parse_addrs(old)[0]] = time.monotonic()  # what the follower does
        await client.set("probe:after", "1")
        with redis.Redis(port=parse_addrs(new)[0][1]) as r:
            assert r.get("probe:after") == b"1"
    finally:
        await pools.aclose()
