"""The ingest lease with real processes (ingest/lease.py): ingesters of one source with disjoint
symbols run together, an overlapping one is refused at once with one line, a kill -9'd holder's
symbols are free after the TTL, a clean exit frees them at once, and a holder whose claim was
taken over (or that cannot renew for a whole TTL) stops with exit 2."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from smarttrade.keyspace import SPECS, Store, lease_key
from smarttrade.redis.embedded import EmbeddedRedis
from tests.test_ingest_reliability import ingest

pytestmark = pytest.mark.one_binary  # the lease's logic, not the server's

SOURCE = "feed"
KEY = lease_key(SOURCE)  # the standalone layout: these servers are standalone
DB = SPECS[Store.QUOTES].default_db
SHORT_TTL = {"SMARTTRADE_INGEST_LEASE_S": "3"}


def live(
    server: EmbeddedRedis, cwd: Path, symbols: str, duration: float, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """A live synthetic ingester of SOURCE for ``symbols``, ``duration`` seconds long."""
    folder = cwd / symbols.replace(",", "-")
    folder.mkdir(exist_ok=True)
    args = ("--synthetic", "--symbols", symbols, "--source", SOURCE, "--duration", str(duration))
    return ingest(server.url, folder, *args, env=env)


def holders(server: EmbeddedRedis) -> dict[str, dict[str, object]]:
    with redis.Redis(port=server.port, db=DB) as r:
        return {k.decode(): json.loads(v) for k, v in r.hgetall(KEY).items()}


def wait_until(what: str, ok: Callable[[], bool], timeout: float = 30) -> float:
    """Seconds until ``ok()``; fails naming ``what`` after ``timeout``."""
    started = time.monotonic()
    while not ok():
        assert time.monotonic() - started < timeout, f"{what}: not within {timeout} s"
        time.sleep(0.02)
    return time.monotonic() - started


def held_by(server: EmbeddedRedis, proc: subprocess.Popen[str]) -> None:
    wait_until(
        f"pid {proc.pid} holds the lease",
        lambda: proc.poll() is None and any(h["pid"] == proc.pid for h in holders(server).values()),
    )


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str]:
    _, stderr = proc.communicate(timeout=timeout)
    return proc.returncode, stderr


def test_disjoint_symbols_run_together(server: EmbeddedRedis, tmp_path: Path) -> None:
    first = live(server, tmp_path, "DOL", 4)
    held_by(server, first)
    second = live(server, tmp_path, "WIN,WDO", 2)
    held_by(server, second)
    assert sorted(str(h["symbols"]) for h in holders(server).values()) == ["DOL", "WDO,WIN"]
    for proc in (second, first):
        code, stderr = finish(proc)
        assert code == 0, stderr
    with redis.Redis(port=server.port, db=DB) as r:  # each committed its own symbols
        for symbol in ("DOL", "WIN", "WDO"):
            assert int(r.hget(f"ingest:checkpoint:{SOURCE}:{symbol}", "seq") or 0) > 0, symbol
        assert not r.exists(KEY)  # both released on their clean exits


def test_overlapping_symbols_are_refused_at_once(server: EmbeddedRedis, tmp_path: Path) -> None:
    first = live(server, tmp_path, "DOL,WIN", 30)
    try:
        held_by(server, first)
        started = time.monotonic()
        code, stderr = finish(live(server, tmp_path, "WIN,WDO", 30))
        took = time.monotonic() - started
        assert code == 2, stderr
        line = stderr.strip().splitlines()[-1]
        assert f"source {SOURCE} is being ingested by another ingester (symbols DOL,WIN, host " in line
        assert f"pid {first.pid}, expires in " in line
        assert took < 15, took  # the start-up, not the other's 30 s
        assert first.poll() is None  # the holder runs on
    finally:
        first.terminate()
    code, stderr = finish(first)
    assert code == 0, stderr  # SIGTERM: a clean stop, which releases
    assert not holders(server)


def test_kill_9_on_this_host_is_taken_over_at_once(server: EmbeddedRedis, tmp_path: Path) -> None:
    """The killed holder's pid is gone on this host: its claim is stale, the next run needs no wait
    (so a restart after kill -9 resumes at once, as before the lease)."""
    first = live(server, tmp_path, "DOL", 60, SHORT_TTL)
    held_by(server, first)
    first.kill()
    first.wait(10)
    code, stderr = finish(live(server, tmp_path, "DOL", 1, SHORT_TTL))
    assert code == 0, stderr


def test_another_hosts_claim_is_free_after_the_ttl(server: EmbeddedRedis, tmp_path: Path) -> None:
    """A holder elsewhere (its pid cannot be checked) that stopped renewing: refused until its
    expiry, then the run starts."""
    with redis.Redis(port=server.port, db=DB) as r:
        now_ms = int(r.time()[0]) * 1000
        other = {"symbols": "DOL", "host": "elsewhere", "pid": 1, "expires": now_ms + 3000}
        r.hset(KEY, "elsewhere:1:x", json.dumps(other))
        r.pexpire(KEY, 3000)
    code, stderr = finish(live(server, tmp_path, "DOL", 1, SHORT_TTL))
    assert code == 2 and "host elsewhere, pid 1, expires in" in stderr, stderr
    freed = wait_until("the lease expires", lambda: not holders(server), timeout=10)
    code, stderr = finish(live(server, tmp_path, "DOL", 1, SHORT_TTL))
    assert code == 0, stderr
    assert freed < 5


def test_a_clean_exit_releases_at_once(server: EmbeddedRedis, tmp_path: Path) -> None:
    code, stderr = finish(live(server, tmp_path, "DOL", 1))
    assert code == 0, stderr
    assert not holders(server)  # a following run need not wait for the TTL (15 s)
    started = time.monotonic()
    code, stderr = finish(live(server, tmp_path, "DOL", 0.5))
    assert code == 0, stderr
    assert time.monotonic() - started < 15


def test_a_holder_taken_over_stops_with_exit_2(server: EmbeddedRedis, tmp_path: Path) -> None:
    """Its field replaced by another holder's (as after it expired): the next renewal (a third
    of the TTL) is refused, and the run stops naming the holder."""
    proc = live(server, tmp_path, "DOL", 60, SHORT_TTL)
    held_by(server, proc)
    with redis.Redis(port=server.port, db=DB) as r:
        now_ms = int(r.time()[0]) * 1000
        other = {"symbols": "DOL", "host": "elsewhere", "pid": 1, "expires": now_ms + 60_000}
        with r.pipeline() as p:
            p.delete(KEY).hset(KEY, "elsewhere:1:x", json.dumps(other)).pexpire(KEY, 60_000).execute()
    started = time.monotonic()
    code, stderr = finish(proc)
    assert code == 2, stderr
    line = stderr.strip().splitlines()[-1]
    assert line.startswith(f"lease on source {SOURCE} lost: another ingester holds it now (symbols DOL, ")
    assert "host elsewhere, pid 1" in line and line.endswith("stopped committing")
    assert time.monotonic() - started < 10


def test_redis_away_longer_than_the_ttl_stops_the_holder(server: EmbeddedRedis, tmp_path: Path) -> None:
    """Writes paused for longer than the TTL: the renewal cannot land, so the ingester stops
    before the server-side expiry (where another could take over), with exit 2."""
    proc = live(server, tmp_path, "DOL", 60, {"SMARTTRADE_INGEST_LEASE_S": "2"})
    held_by(server, proc)
    with redis.Redis(port=server.port) as r:
        r.execute_command("CLIENT", "PAUSE", 5000, "WRITE")
    try:
        code, stderr = finish(proc, timeout=30)
    finally:
        with redis.Redis(port=server.port) as r:
            r.execute_command("CLIENT", "UNPAUSE")
    assert code == 2, stderr
    line = stderr.strip().splitlines()[-1]
    assert line.startswith(f"lease on source {SOURCE} lost: not renewed for SMARTTRADE_INGEST_LEASE_S=2 s")
