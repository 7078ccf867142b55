"""Ingest on a 3-primary Redis Cluster (one replica each), both binaries: each symbol's commit runs
on its slot's primary, the stores equal a standalone run of the same replay key by key (keys
compared without their hash tag), a kill -9 of a primary mid-replay ends with the same stores
(its replica takes over; nothing lost, nothing applied twice), and the ops/s correction reads
the per-symbol script counters of every primary."""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from smarttrade import keyspace as ks
from smarttrade.ops.sample import script_calls, take
from smarttrade.ops.server import Admin
from smarttrade.redis.scripts import commit_script
from smarttrade.redis.topology import Topology
from smarttrade.settings import Settings
from tests.conftest import start_server
from tests.test_ingest_reliability import ingest, summary
from tests.test_one_db import _everything
from tests.topologies import Cluster, Node

pytestmark = [pytest.mark.topology, pytest.mark.one_binary]

SYMBOLS = ("DOL", "WDO", "WIN", "IND")


def replay(count: int) -> list[str]:
    return [
        *("--json", "--synthetic", "--count", str(count), "--seed", "11"),
        *("--start-day", "2025-11-24", "--symbols", ",".join(SYMBOLS)),
    ]


def cluster_env(cluster: Cluster) -> dict[str, str]:
    return {"REDIS_MODE": "cluster", "REDIS_CLUSTER_NODES": ",".join(cluster.seeds)}


def owner(cluster: Cluster, symbol: str) -> Node:
    """The primary serving the symbol's slot (every key of its commit hashes to it)."""
    return cluster.node_for_slot(key_slot(f"{{{symbol}}}".encode()))


def untagged(key: str) -> str:
    """A cluster key in the standalone spelling: ``quote:{DOL}:17`` -> ``quote:DOL:17``."""
    return re.sub(r"\{([^{}]+)\}", r"\1", key, count=1)


def cluster_stores(cluster: Cluster) -> dict[str, Any]:
    """Every primary's keys (test_one_db's reading of database 0), in the standalone spelling."""
    out: dict[str, Any] = {}
    for node in cluster.primaries():
        for key, value in _everything(node, range(1)).items():  # type: ignore[arg-type]
            assert untagged(key) not in out, f"{key} on two primaries"
            out[untagged(key)] = value
    return out


def ledger(nodes: list[Any], dbs: range = range(1)) -> dict[str, tuple[bytes | int | None, ...]]:
    """Per symbol: lines committed and their digest (the checkpoint's count and digest) and the
    trade stream's length. A commit applied twice or lost changes one of them."""
    counts: dict[str, list[bytes | None]] = {}
    lengths: dict[str, int] = {}
    for node in nodes:
        for db in dbs:
            with redis.Redis(port=node.port, db=db) as r:
                for key in r.scan_iter(match=f"{ks.CHECKPOINT_PREFIX}:*", count=500):
                    counts[untagged(key.decode()).rpartition(":")[2]] = r.hmget(key, "count", "digest")
                for key in r.scan_iter(match="stream:trades:*", count=500):
                    lengths[untagged(key.decode()).rpartition(":")[2]] = r.xlen(key)
    return {s: (*c, lengths.get(s, 0)) for s, c in counts.items()}


def run_to_end(url: str, cwd: Path, count: int, env: dict[str, str] | None = None) -> dict[str, Any]:
    cwd.mkdir(parents=True, exist_ok=True)
    proc = ingest(url, cwd, *replay(count), env=env)
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stderr
    return summary(stdout)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, binary: str) -> Any:
    """The same replay on one standalone server: its stores and ledger, by count (made once)."""
    made: dict[tuple[str, int], tuple[dict[str, Any], dict[str, tuple[bytes | int | None, ...]]]] = {}

    def of(count: int) -> tuple[dict[str, Any], dict[str, tuple[bytes | int | None, ...]]]:
        if (binary, count) not in made:
            tmp = tmp_path_factory.mktemp("reference")
            server = start_server(tmp / "standalone", binary)
            try:
                run_to_end(server.url, tmp / "run", count)
                made[binary, count] = (_everything(server, range(16)), ledger([server], range(16)))
            finally:
                server.stop(save=False)
        return made[binary, count]

    return of


def test_replay_on_three_primaries_equals_the_standalone_run(
    cluster_clean: Cluster, reference: Any, tmp_path: Path
) -> None:
    homes = {owner(cluster_clean, s).port for s in SYMBOLS}
    assert len(homes) >= 2, "the symbols should spread over at least two primaries"
    seed = cluster_clean.primaries()[0]
    got = run_to_end(f"redis://{seed.addr}", tmp_path / "cluster", 200_000, cluster_env(cluster_clean))
    assert got["trades"] == 200_000 and got["failed"] is None
    stores, counts = reference(200_000)
    assert len(stores) > 5_000 and any(k.startswith("bar:") for k in stores)
    on_cluster = cluster_stores(cluster_clean)
    assert on_cluster.keys() == stores.keys()
    assert on_cluster == stores
    assert ledger(cluster_clean.primaries()) == counts
    for symbol in SYMBOLS:  # its checkpoint on its slot's primary
        assert checkpoint_seq(owner(cluster_clean, symbol), symbol) > 0
    # a second run finds its checkpoints on every primary and commits nothing again
    again = run_to_end(f"redis://{seed.addr}", tmp_path / "again", 200_000, cluster_env(cluster_clean))
    assert again["trades"] == 0 and again["resumed"] == 200_000, again


async def test_ops_rate_counts_the_script_counters_of_every_primary(
    cluster_clean: Cluster, tmp_path: Path
) -> None:
    seed = cluster_clean.primaries()[0]
    run_to_end(f"redis://{seed.addr}", tmp_path / "run", 20_000, cluster_env(cluster_clean))
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        redis_mode="cluster",
        redis_cluster_nodes=",".join(cluster_clean.seeds),
    )
    topology = Topology.from_settings(settings)
    try:
        await topology.ping()
        per_symbol = {}
        for s in SYMBOLS:
            with owner(cluster_clean, s).client() as r:
                per_symbol[s] = int(r.hget(f"{ks.SCRIPT_CALLS_KEY}:{{{s}}}", "calls") or 0)
        assert min(per_symbol.values()) > 0
        # the cluster client (SCAN over every primary) sums them all ...
        assert await script_calls(Admin(topology.admin, settings, topology.url)) == sum(per_symbol.values())
        # ... and one primary's sample counts its own symbols only, within its own INFO
        parts = []
        for client in topology.primaries():
            sample = await take(Admin(client, settings, topology.url))
            assert sample.script_calls <= sample.commands
            parts.append(sample.script_calls)
        assert sum(parts) == sum(per_symbol.values()) and sum(1 for p in parts if p) >= 2
    finally:
        await topology.aclose()
        ks.use_layout(ks.STANDALONE)


def checkpoint_seq(node: Node, symbol: str) -> int:
    with node.client() as r:
        keys = list(r.scan_iter(match=f"{ks.CHECKPOINT_PREFIX}:*:{{{symbol}}}", count=100))
        return sum(int(r.hget(k, "seq") or 0) for k in keys)


KILL_REPLAY = 600_000


def start_replay(cluster: Cluster, victim: Node, cwd: Path, err: Any) -> Any:
    """The replay as a subprocess seeded by another primary, once it has committed on ``victim``."""
    seed = next(n for n in cluster.primaries() if n.port != victim.port)
    cwd.mkdir()
    proc = ingest(f"redis://{seed.addr}", cwd, *replay(KILL_REPLAY), stderr=err, env=cluster_env(cluster))
    deadline = time.monotonic() + 60
    while checkpoint_seq(victim, "DOL") < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the replay ended before the fault"
    return proc


def assert_same_as_uninterrupted(cluster: Cluster, reference: Any) -> None:
    stores, counts = reference(KILL_REPLAY)
    assert ledger(cluster.primaries()) == counts  # no line lost, none counted twice
    on_cluster = cluster_stores(cluster)
    assert on_cluster.keys() == stores.keys()
    assert on_cluster == stores


def test_kill_9_of_a_primary_mid_replay_changes_nothing(
    fresh_cluster: Cluster, reference: Any, tmp_path: Path
) -> None:
    """The primary of DOL's slot dies mid-replay: its replica is promoted, the ingester waits,
    finds the new primary and resends; replica lag may lose acknowledged commits, which the
    ingester notices (its checkpoints ahead of Redis's) and replays from Redis's checkpoints."""
    victim = owner(fresh_cluster, "DOL")
    err_path = tmp_path / "stderr.txt"
    with err_path.open("w") as err:
        proc = start_replay(fresh_cluster, victim, tmp_path / "killed", err)
        victim.kill9()
        promoted = fresh_cluster.wait_failover(victim)
        stdout, _ = proc.communicate(timeout=240)
    log = err_path.read_text()
    assert proc.returncode == 0, log
    assert "waiting for Redis" in log, log
    assert summary(stdout)["failed"] is None
    assert promoted.port == owner(fresh_cluster, "DOL").port
    with promoted.client() as r:  # 7.0 copies no SCRIPT LOAD to replicas: NOSCRIPT made us load it
        assert r.script_exists(hashlib.sha1(commit_script("cluster").encode()).hexdigest()) == [True]
    assert_same_as_uninterrupted(fresh_cluster, reference)


def test_manual_failover_mid_replay_is_followed(
    fresh_cluster: Cluster, reference: Any, tmp_path: Path
) -> None:
    """CLUSTER FAILOVER on DOL's replica: no connection drops, the old primary answers MOVED to
    the commits still coming, and the ingester reloads the slot map and resends them there."""
    victim = owner(fresh_cluster, "DOL")
    replica = fresh_cluster.replicas_of(victim)[0]
    err_path = tmp_path / "stderr.txt"
    with err_path.open("w") as err:
        proc = start_replay(fresh_cluster, victim, tmp_path / "moved", err)
        with replica.client() as r:
            r.execute_command("CLUSTER", "FAILOVER")
        deadline = time.monotonic() + 30
        while owner(fresh_cluster, "DOL").port != replica.port:
            assert time.monotonic() < deadline, "the manual failover did not happen"
            time.sleep(0.05)
        stdout, _ = proc.communicate(timeout=240)
    log = err_path.read_text()
    assert proc.returncode == 0, log
    assert "(MOVED)" in log, log
    assert summary(stdout)["failed"] is None
    fresh_cluster.wait_ok()
    assert_same_as_uninterrupted(fresh_cluster, reference)


def test_an_online_slot_move_mid_replay_is_followed(
    fresh_cluster: Cluster, reference: Any, tmp_path: Path
) -> None:
    """DOL's slot migrates to another primary mid-replay, key by key: commits that meet the
    half-moved slot get ASK or TRYAGAIN and wait, those after it MOVED; the ingester reloads the
    slot map and resends, and the script's sequence check applies each commit once."""
    source = owner(fresh_cluster, "DOL")
    target = next(p for p in fresh_cluster.primaries() if p.port != source.port)
    err_path = tmp_path / "stderr.txt"
    with err_path.open("w") as err:
        proc = start_replay(fresh_cluster, source, tmp_path / "resharded", err)
        moved = fresh_cluster.move_slot(key_slot(b"{DOL}"), target)
        stdout, _ = proc.communicate(timeout=240)
    log = err_path.read_text()
    assert proc.returncode == 0, log
    assert moved > 0 and owner(fresh_cluster, "DOL").port == target.port
    assert "waiting for a cluster reshard" in log or "(MOVED)" in log, log
    assert summary(stdout)["failed"] is None
    assert_same_as_uninterrupted(fresh_cluster, reference)
