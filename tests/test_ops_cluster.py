"""The ops commands on a 3-primary cluster with a replica each (tests/topologies.py), run as the
real ``smarttrade`` command with REDIS_MODE=cluster: status shows every node with its slots,
profile and audit act on each of the six, and the key commands see the keys of every primary."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.cluster import ClusterNode, RedisCluster

from smarttrade import keyspace as ks
from smarttrade.keyspace import CLUSTER, use_layout
from tests.conftest import run_smarttrade
from tests.topologies import Cluster

pytestmark = pytest.mark.topology

SYMBOLS = ("DOL", "WDO", "WIN", "PETR", "VALE", "ITUB")
QUOTES_EACH = 20


def cluster_env(cluster: Cluster, tmp: str) -> dict[str, str]:
    return {
        **os.environ,
        "REDIS_MODE": "cluster",
        "REDIS_CLUSTER_NODES": ",".join(cluster.seeds),
        "SMARTTRADE_DATA_DIR": tmp,
        "COLUMNS": "200",
    }


@pytest.fixture
def seeded(cluster_clean: Cluster) -> Iterator[Cluster]:
    """Quotes of six symbols (their slots spread over the primaries), one without a TTL each,
    and a user setting per symbol, written with the cluster layout's own key functions."""
    previous = use_layout(CLUSTER)
    try:
        host, port = cluster_clean.seeds[0].rsplit(":", 1)
        with RedisCluster(startup_nodes=[ClusterNode(host, int(port))]) as rc:
            for sym in SYMBOLS:
                for i in range(QUOTES_EACH):
                    rc.set(ks.quote_key(sym, 1_700_000_000 + i), "{}", ex=600)
                rc.set(ks.quote_key(sym, 1), "{}")  # no TTL: cleanup's to fix
                rc.set(ks.config_key(f"u{sym.lower()}", "theme"), '"dark"')
    finally:
        use_layout(previous)
    yield cluster_clean


def smarttrade(cluster: Cluster, tmp_path: Path, *args: str) -> tuple[int, str, str]:
    done = run_smarttrade(*args, env=cluster_env(cluster, str(tmp_path)))
    return done.returncode, done.stdout, done.stderr


def test_status_shows_every_node_with_slots(seeded: Cluster, tmp_path: Path) -> None:
    code, stdout, stderr = smarttrade(seeded, tmp_path, "status", "--json")
    assert code == 0, stderr
    view = json.loads(stdout)["topology"]
    assert view["mode"] == "cluster"
    primaries = [n for n in view["nodes"] if n["role"] == "primary"]
    replicas = [n for n in view["nodes"] if n["role"] == "replica"]
    assert len(primaries) == 3 and len(replicas) == 3
    assert all(n["healthy"] for n in view["nodes"])
    assert {n["addr"] for n in primaries} == {n.addr for n in seeded.primaries()}
    assert {r["of"] for r in replicas} == {p["addr"] for p in primaries}
    covered = sum(
        int(hi) - int(lo) + 1
        for p in primaries
        for part in p["slots"].split(",")
        for lo, _, hi in [part.partition("-")]
        if hi
    )
    assert covered == 16384
    code, table, _ = smarttrade(seeded, tmp_path, "status")  # a pipe: plain lines, nothing cut
    assert code == 0 and "topology: cluster" in table
    assert all(n.addr in table for n in seeded.nodes)


def test_profile_and_audit_act_on_every_node(seeded: Cluster, tmp_path: Path) -> None:
    code, stdout, _ = smarttrade(seeded, tmp_path, "profile", "check", "--json")
    assert code == 1  # the harness's nodes do not run the trading profile
    nodes = json.loads(stdout)["nodes"]
    assert {n["node"] for n in nodes} == {n.addr for n in seeded.nodes}
    code, stdout, stderr = smarttrade(seeded, tmp_path, "profile", "apply", "--yes")
    assert code == 0, stderr
    for node in seeded.nodes:  # CONFIG SET reached each node, replicas included
        assert f"{node.addr} (" in stdout
        with node.client() as c:
            assert c.config_get("maxmemory-policy")["maxmemory-policy"] == "volatile-lru"
    code, stdout, _ = smarttrade(seeded, tmp_path, "profile", "check")
    assert code == 0, stdout
    code, stdout, _ = smarttrade(seeded, tmp_path, "audit", "--json")
    assert {f["node"] for f in json.loads(stdout)["findings"]} == {n.addr for n in seeded.nodes}


def test_key_commands_cover_every_primary(seeded: Cluster, tmp_path: Path) -> None:
    total = len(SYMBOLS) * (QUOTES_EACH + 1)
    code, stdout, stderr = smarttrade(seeded, tmp_path, "stats", "--json")
    assert code == 0, stderr
    rows = {r["store"]: r for r in json.loads(stdout)}
    assert rows["quotes"]["keys"] == total and rows["config"]["keys"] == len(SYMBOLS)
    # keys: pages through each primary in turn with a resumable cursor
    seen: list[str] = []
    cursor = "0"
    for _ in range(50):
        code, stdout, stderr = smarttrade(
            seeded, tmp_path, "keys", "quotes", "--limit", "25", "--json", "--cursor", cursor
        )
        assert code == 0, stderr
        page = json.loads(stdout)
        seen += [k["key"] for k in page["keys"]]
        cursor = str(page["cursor"])
        if cursor == "0":
            break
    assert len(seen) == len(set(seen)) == total
    code, stdout, _ = smarttrade(seeded, tmp_path, "ttl", "quotes", "--json")
    assert json.loads(stdout)["missing_ttl"] == len(SYMBOLS)
    code, stdout, _ = smarttrade(seeded, tmp_path, "cleanup", "quotes", "--apply", "--json")
    assert json.loads(stdout)[0]["fixed"] == len(SYMBOLS)
    code, stdout, stderr = smarttrade(seeded, tmp_path, "flush", "quotes", "--yes")
    assert code == 0, stderr
    settings_left = 0
    for primary in seeded.primaries():
        with primary.client() as c:
            assert not list(c.scan_iter(match="quote:*", count=1000))
            settings_left += len(list(c.scan_iter(match="config:*", count=1000)))
    assert settings_left == len(SYMBOLS)  # another store's keys stay


def test_export_import_round_trip(seeded: Cluster, tmp_path: Path) -> None:
    """export walks every primary; import RESTOREs each key through the cluster client (its slot's
    primary), keeping its TTL."""
    file = tmp_path / "quotes.jsonl"
    code, stdout, stderr = smarttrade(seeded, tmp_path, "export", "quotes", str(file), "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["keys"] == len(SYMBOLS) * (QUOTES_EACH + 1)
    assert smarttrade(seeded, tmp_path, "flush", "quotes", "--yes")[0] == 0
    code, stdout, stderr = smarttrade(seeded, tmp_path, "import", str(file), "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["restored"] == len(SYMBOLS) * (QUOTES_EACH + 1)
    previous = use_layout(CLUSTER)
    try:
        key = ks.quote_key("DOL", 1_700_000_000)
    finally:
        use_layout(previous)
    host, port = seeded.seeds[0].rsplit(":", 1)
    with RedisCluster(startup_nodes=[ClusterNode(host, int(port))]) as rc:
        assert 0 < rc.ttl(key) <= 600
