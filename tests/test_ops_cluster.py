"""The ops commands on a 3-primary cluster with a replica each (tests/topologies.py), run as the
real ``smarttrade`` command with REDIS_MODE=cluster: status shows every node with its slots,
profile and audit act on each of the six, and the key commands see the keys of every primary."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.cluster import ClusterNode, RedisCluster

from smarttrade import keyspace as ks
from smarttrade.keyspace import CLUSTER, use_layout
from tests.conftest import run_smarttrade
from tests.topologies import Cluster

pytestmark = [pytest.mark.topology, pytest.mark.one_binary]

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
    assert "quote:{SYMBOL}:EPOCH_S" in table and "quote:SYMBOL:" not in table  # the keys as spelt here


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_monitor_alerts_exporter_read_every_primary(seeded: Cluster, tmp_path: Path) -> None:
    """Figures that add up are summed over the primaries and listed per node; the memory alert
    fires on the one primary near its own maxmemory (the sum of three is far from full); the
    exporter's per-server series carry node="host:port", one per primary."""
    primaries = {p.addr: p for p in seeded.primaries()}
    code, stdout, stderr = smarttrade(seeded, tmp_path, "monitor", "--json", "--interval", "0.3")
    assert code == 0, stderr
    reading = json.loads(stdout)
    assert {n["node"] for n in reading["nodes"]} == set(primaries)
    assert all(n["role"] == "master" and n["replicas"] == 1 for n in reading["nodes"])
    total = len(SYMBOLS) * (QUOTES_EACH + 2)  # quotes and a user setting each
    assert sum(n["keys"] for n in reading["nodes"]) == reading["keys"]["db0"] >= total
    assert reading["memory"]["used_bytes"] == sum(n["used_bytes"] for n in reading["nodes"])
    code, _, stderr = smarttrade(seeded, tmp_path, "info", "memory")  # one server's state
    assert code == 2 and "give --node HOST:PORT" in stderr
    assert len(stderr.strip().splitlines()) == 1

    full = next(iter(primaries.values()))
    with full.client() as c:
        before = c.config_get("maxmemory")["maxmemory"]
        used = int(c.info("memory")["used_memory"])
        c.config_set("maxmemory", str(int(used * 1.05)))  # ~95% full: above the 90% crit level
    try:
        code, stdout, stderr = smarttrade(seeded, tmp_path, "alerts", "--json", "--interval", "0.2")
        checks = {c["check"]: c for c in json.loads(stdout)["checks"]}
        assert checks["memory"]["level"] == "critical", checks["memory"]
        assert f"on {full.addr}" in checks["memory"]["value"]
        assert code == 2
    finally:
        with full.client() as c:
            c.config_set("maxmemory", before)

    port = free_port()
    env = cluster_env(seeded, str(tmp_path))
    exe = shutil.which("smarttrade", path=str(Path(sys.executable).parent))
    cmd = [exe] if exe else [sys.executable, "-m", "smarttrade"]
    proc = subprocess.Popen(
        [*cmd, "exporter", "--port", str(port), "--duration", "20"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        text = ""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as got:
                    text = got.read().decode()
                break
            except OSError:
                time.sleep(0.2)
        assert "redis_up 1.0" in text, text[:500]
        series = {
            s.labels["node"]: s.value
            for fam in text_string_to_metric_families(text)
            if fam.name == "redis_memory_used_bytes"
            for s in fam.samples
        }
        assert set(series) == set(primaries)
        keys = [
            s.value
            for fam in text_string_to_metric_families(text)
            if fam.name == "redis_db_keys"
            for s in fam.samples
        ]
        assert sum(keys) >= total and len(keys) == len(primaries)
    finally:
        proc.terminate()
        proc.wait(10)


def check_node_set(folder: Path, want: dict[str, str]) -> dict[str, object]:
    """A per-node backup set: one RDB per wanted node (addr -> slots), each file's sha256 as the
    manifest and SHA256SUMS say; returns the manifest."""
    manifest = json.loads((folder / "manifest.json").read_text())
    assert {n["addr"]: n["slots"] for n in manifest["nodes"]} == want
    sums = dict(line.split("  ")[::-1] for line in (folder / "SHA256SUMS").read_text().splitlines())
    for node in manifest["nodes"]:
        data = (folder / node["file"]).read_bytes()
        assert data.startswith(b"REDIS") and len(data) == node["bytes"]
        assert hashlib.sha256(data).hexdigest() == node["sha256"] == sums[node["file"]]
        assert node["run_id"] and node["role"] == "primary"
    return manifest


def test_backup_saves_every_primary_with_a_manifest(seeded: Cluster, tmp_path: Path) -> None:
    code, stdout, _ = smarttrade(seeded, tmp_path, "status", "--json")
    slots = {n["addr"]: n["slots"] for n in json.loads(stdout)["topology"]["nodes"] if n["role"] == "primary"}
    target = tmp_path / "backups"  # SMARTTRADE_DATA_DIR/backups: the default folder
    code, stdout, stderr = smarttrade(seeded, tmp_path, "backup", "--json")
    assert code == 0, stderr
    got = json.loads(stdout)
    assert got["mode"] == "cluster" and Path(got["folder"]).parent == target
    check_node_set(Path(got["folder"]), slots)
    code, stdout, _ = smarttrade(seeded, tmp_path, "backups", "--json")  # the set counts as a backup
    assert [b["file"] for b in json.loads(stdout)] == [got["folder"]]
    code, stdout, stderr = smarttrade(seeded, tmp_path, "restore", "--check", got["folder"])
    assert code == 0, stderr
    assert all(f"{addr}: " in stdout for addr in slots) and stdout.count(" ok") == len(slots)
    code, _, stderr = smarttrade(seeded, tmp_path, "restore", got["folder"], "--yes")
    assert code == 2 and "a procedure, not a command" in stderr and len(stderr.strip().splitlines()) == 1
    code, stdout, stderr = smarttrade(seeded, tmp_path, "backup", "--keep", "1")
    assert code == 0, stderr
    assert all(f"{addr} (primary) slots {s}" in stdout for addr, s in slots.items())
    assert "removed old backup" in stdout and len(list(target.iterdir())) == 1


def test_ingest_then_read_back_and_flushdb(cluster_clean: Cluster, tmp_path: Path) -> None:
    """A real ingest on the cluster; then `indicators` finds the forming bar (the hash-tagged
    checkpoint), `get` reads keys of every kind from their own nodes, and `flush --flushdb`
    FLUSHes each primary that holds only that store's keys and SCAN+UNLINKs the others."""
    cluster = cluster_clean
    code, _, stderr = smarttrade(
        cluster, tmp_path, "ingest", "--synthetic", "--count", "20000", "--symbols", "WIN,DOL",
        "--start-day", "2025-11-24", "--dead-letter", str(tmp_path / "dead"),
    )  # fmt: skip
    assert code == 0, stderr
    code, stdout, stderr = smarttrade(cluster, tmp_path, "indicators", "WIN", "--json")
    assert code == 0, stderr
    assert "1m" in json.loads(stdout)["forming"]
    for store, pattern in (
        ("quotes", "quote:*"),
        ("quotes", "ingest:checkpoint:*"),
        ("orderflow", "bar:*"),
        ("orderflow", "bars:*"),
        ("orderflow", "stream:trades:*"),
        ("quotes", "lastquote:*"),
        ("calc", "calc:*"),
    ):
        code, stdout, stderr = smarttrade(
            cluster, tmp_path, "keys", store, "--pattern", pattern, "--limit", "1000", "--json"
        )
        assert code == 0, stderr
        found = json.loads(stdout)["keys"]
        assert found, (store, pattern)
        key = found[0]["key"]
        code, stdout, stderr = smarttrade(cluster, tmp_path, "get", key, "--json")
        assert code == 0, (key, stderr)
        assert json.loads(stdout), key

    # flush --flushdb: quotes only on the primaries, but for one user setting on one of them
    for primary in cluster.primaries():
        with primary.client() as c:
            c.flushdb()
    previous = use_layout(CLUSTER)
    try:
        host, port = cluster.seeds[0].rsplit(":", 1)
        with RedisCluster(startup_nodes=[ClusterNode(host, int(port))]) as rc:
            for sym in SYMBOLS:
                rc.set(ks.quote_key(sym, 1_700_000_000), "{}", ex=600)
            setting = ks.config_key("u1", "theme")
            rc.set(setting, '"dark"')
    finally:
        use_layout(previous)
    code, stdout, stderr = smarttrade(cluster, tmp_path, "flush", "quotes", "--flushdb", "--yes")
    assert code == 0, stderr
    assert f"{len(SYMBOLS)} keys deleted (FLUSHDB on 2, SCAN+UNLINK on 1 primaries" in stdout
    assert "1 of 3 primaries hold 1 keys" in stderr
    with RedisCluster(startup_nodes=[ClusterNode(host, int(port))]) as rc:
        assert rc.get(setting) == b'"dark"'
        assert rc.dbsize() == 1


def test_one_server_commands_read_the_node_given(seeded: Cluster, tmp_path: Path) -> None:
    """info, slowlog and latency read one server: --node names which, replicas included."""
    replica = seeded.replicas()[0]
    code, stdout, stderr = smarttrade(
        seeded, tmp_path, "info", "replication", "server", "--node", replica.addr, "--json"
    )
    assert code == 0, stderr
    info = json.loads(stdout)
    assert info["replication"]["role"] == "slave" and info["server"]["tcp_port"] == replica.port
    primary = seeded.primaries()[0]
    with primary.client() as c:
        before = c.config_get("slowlog-log-slower-than")["slowlog-log-slower-than"]
        c.config_set("slowlog-log-slower-than", "0")  # our own test cluster: log every command
        c.slowlog_reset()
        c.ping()
    try:
        code, stdout, stderr = smarttrade(seeded, tmp_path, "slowlog", "--node", primary.addr, "--json")
        assert code == 0, stderr
        assert json.loads(stdout)["length"] >= 1
    finally:
        with primary.client() as c:
            c.config_set("slowlog-log-slower-than", before)
    code, stdout, stderr = smarttrade(
        seeded, tmp_path, "latency", "--count", "20", "--node", primary.addr, "--json"
    )
    assert code == 0 and json.loads(stdout)["samples"] == 20, stderr
    code, _, stderr = smarttrade(seeded, tmp_path, "slowlog", "--node", "127.0.0.1:1")
    assert code == 2 and "--node: '127.0.0.1:1' is not a data node of this cluster" in stderr
    assert primary.addr in stderr and len(stderr.strip().splitlines()) == 1
