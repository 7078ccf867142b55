"""Bad or unreachable topology settings: one line naming the setting, at once, exit 2."""

from __future__ import annotations

import os

import pytest

from smarttrade.redis.embedded import EmbeddedRedis, free_port
from tests.conftest import run_smarttrade
from tests.topologies import SentinelGroup


def _status(**env: str) -> tuple[int, list[str]]:
    result = run_smarttrade("status", env={**os.environ, **env}, timeout=60)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, [ln for ln in result.stderr.splitlines() if ln.strip()]


def test_cluster_seeds_that_do_not_answer() -> None:
    port = free_port()
    code, lines = _status(REDIS_MODE="cluster", REDIS_CLUSTER_NODES=f"127.0.0.1:{port}")
    assert code == 2 and len(lines) == 1
    assert f"REDIS_CLUSTER_NODES=127.0.0.1:{port}" in lines[0] and "Connection refused" in lines[0]


def test_a_cluster_seed_that_is_not_a_cluster_node(server: EmbeddedRedis) -> None:
    code, lines = _status(REDIS_MODE="cluster", REDIS_CLUSTER_NODES=f"127.0.0.1:{server.port}")
    assert code == 2 and len(lines) == 1
    assert "REDIS_CLUSTER_NODES" in lines[0] and "cluster mode is not enabled" in lines[0]


def test_sentinels_that_do_not_answer_or_are_not_sentinels(server: EmbeddedRedis) -> None:
    dead = free_port()
    code, lines = _status(REDIS_MODE="sentinel", REDIS_SENTINELS=f"127.0.0.1:{dead},127.0.0.1:{server.port}")
    assert code == 2 and len(lines) == 1
    assert f"REDIS_SENTINELS=127.0.0.1:{dead},127.0.0.1:{server.port}" in lines[0]
    assert f"127.0.0.1:{dead}: Connection refused" in lines[0]
    assert f"127.0.0.1:{server.port} is not a sentinel" in lines[0]


@pytest.mark.topology
def test_a_master_name_the_sentinels_do_not_know(sentinel_group: SentinelGroup) -> None:
    code, lines = _status(
        REDIS_MODE="sentinel",
        REDIS_SENTINELS=",".join(sentinel_group.sentinel_addrs),
        REDIS_SENTINEL_MASTER="nosuchmaster",
    )
    assert code == 2 and len(lines) == 1
    assert "REDIS_SENTINEL_MASTER=nosuchmaster" in lines[0] and "no sentinel knows it" in lines[0]
