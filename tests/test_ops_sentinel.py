"""The ops commands in sentinel mode (a primary, a replica, 3 sentinels; tests/topologies.py), run
as the real ``smarttrade`` command: status names the master the sentinels agree on and lists the
sentinels; profile and audit act on the master and its replica, never on a sentinel; backup saves
the master with a manifest."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from smarttrade.ops.nodes import primary_admins
from smarttrade.ops.sample import take_all
from smarttrade.redis.topology import Topology
from tests.conftest import run_smarttrade
from tests.test_ops_cluster import check_node_set
from tests.test_sentinel_fanout import sentinel_settings
from tests.topologies import SentinelGroup

pytestmark = [pytest.mark.topology, pytest.mark.one_binary]


def smarttrade(group: SentinelGroup, tmp_path: Path, *args: str) -> tuple[int, str, str]:
    env = {
        **os.environ,
        "REDIS_MODE": "sentinel",
        "REDIS_SENTINELS": ",".join(group.sentinel_addrs),
        "REDIS_SENTINEL_MASTER": group.master_name,
        "SMARTTRADE_DATA_DIR": str(tmp_path),
        "COLUMNS": "200",
    }
    done = run_smarttrade(*args, env=env)
    return done.returncode, done.stdout, done.stderr


def test_status_profile_and_audit(sentinel_group: SentinelGroup, tmp_path: Path) -> None:
    group = sentinel_group
    code, stdout, stderr = smarttrade(group, tmp_path, "status", "--json")
    assert code == 0, stderr
    view = json.loads(stdout)["topology"]
    assert view["mode"] == "sentinel" and view["master"] == group.current_master() == group.primary.addr
    roles = {n["addr"]: n["role"] for n in view["nodes"]}
    assert roles[group.primary.addr] == "primary" and roles[group.replica.addr] == "replica"
    sentinels = [n for n in view["nodes"] if n["role"] == "sentinel"]
    assert {n["addr"] for n in sentinels} == set(group.sentinel_addrs)
    assert all(n["healthy"] and n["link"] == group.primary.addr for n in sentinels)
    code, table, _ = smarttrade(group, tmp_path, "status")
    assert code == 0 and f"{group.master_name} at {group.primary.addr}" in table

    data_nodes = {group.primary.addr, group.replica.addr}
    code, stdout, stderr = smarttrade(group, tmp_path, "profile", "check", "--json")
    assert {n["node"] for n in json.loads(stdout)["nodes"]} == data_nodes
    assert "sentinels hold no data" in stderr
    code, stdout, stderr = smarttrade(group, tmp_path, "audit", "--json")
    assert {f["node"] for f in json.loads(stdout)["findings"]} == data_nodes

    # backup: the master's RDB, in a set with a manifest (a replica's copy would be the same data)
    code, stdout, stderr = smarttrade(group, tmp_path, "backup", "--json")
    assert code == 0, stderr
    got = json.loads(stdout)
    assert got["mode"] == "sentinel"
    check_node_set(Path(got["folder"]), {group.primary.addr: ""})


def test_info_reads_the_master_or_the_node_given(sentinel_group: SentinelGroup, tmp_path: Path) -> None:
    group = sentinel_group
    code, stdout, stderr = smarttrade(group, tmp_path, "info", "replication", "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["replication"]["role"] == "master"
    asked = ("info", "replication", "--node", group.replica.addr, "--json")
    code, stdout, stderr = smarttrade(group, tmp_path, *asked)
    assert code == 0, stderr
    assert json.loads(stdout)["replication"]["role"] == "slave"
    code, _, stderr = smarttrade(group, tmp_path, "latency", "--node", group.sentinel_addrs[0])
    assert code == 2 and "is not a data node of this sentinel" in stderr  # a sentinel holds no data


async def test_server_figures_name_the_master(sentinel_group: SentinelGroup) -> None:
    """monitor, alerts and /metrics label the server read with the master's host:port (the
    exporter's node label), not the sentinel URL."""
    settings = sentinel_settings(sentinel_group)
    topology = Topology.from_settings(settings)
    try:
        await topology.ping()
        servers = await primary_admins(topology, settings, topology.url)
        sample = await take_all(servers.admins)
        assert [n.node for n in sample.members] == [sentinel_group.primary.addr]
        assert sample.role == "master"
    finally:
        await topology.aclose()
