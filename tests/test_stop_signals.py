"""Issue 9 items 12 and 13: SIGTERM is a clean stop (exit 0), Ctrl-C keeps 130, and neither
leaves a traceback or an unretrieved future on stderr. Real signals to real processes, sent once
the process has shown progress (keys in Redis, a /metrics answer), never after a fixed sleep."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from smarttrade.redis.embedded import EmbeddedRedis, free_port
from tests.test_deploy import SYSTEMD, unit_settings

EXIT = {signal.SIGTERM: 0, signal.SIGINT: 130}


def _start(args: list[str], url: str, cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "REDIS_URL": url, "COLUMNS": "200"}
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "smarttrade"), *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a Ctrl-C must reach it even when the test runner's shell ignores SIGINT
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _until(proc: subprocess.Popen[str], ready: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no progress in time"
        time.sleep(0.05)


def _stop(proc: subprocess.Popen[str], sig: signal.Signals) -> tuple[str, str]:
    proc.send_signal(sig)
    try:
        return proc.communicate(timeout=60)
    finally:
        proc.kill()


def _clean(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert "never retrieved" not in stderr, stderr
    assert "CancelledError" not in stderr, stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
@pytest.mark.parametrize("live", [False, True], ids=["replay", "live"])
def test_ingest_stops_cleanly(server: EmbeddedRedis, tmp_path: Path, sig: signal.Signals, live: bool) -> None:
    feed = ["--rate", "200"] if live else ["--count", "5000000"]
    proc = _start(
        ["ingest", "--synthetic", *feed, "--dead-letter", str(tmp_path / "dl.jsonl")], server.url, tmp_path
    )
    with redis.Redis(port=server.port, db=1) as orderflow:
        _until(proc, lambda: orderflow.dbsize() > 0)  # trades committed: mid-run
    _, stderr = _stop(proc, sig)
    assert proc.returncode == EXIT[sig], stderr
    _clean(stderr)
    if sig == signal.SIGTERM:
        assert stderr.strip().splitlines()[-1] == "stopped by SIGTERM"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_exporter_stops_cleanly(server: EmbeddedRedis, tmp_path: Path, sig: signal.Signals) -> None:
    port = free_port()
    proc = _start(["exporter", "--port", str(port)], server.url, tmp_path)

    def serving() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
                return b"redis_up 1" in reply.read()
        except OSError:
            return False

    _until(proc, serving)
    _, stderr = _stop(proc, sig)
    assert proc.returncode == EXIT[sig], stderr
    _clean(stderr)


def test_demo_sigterm_exits_0_with_its_summary(server: EmbeddedRedis, tmp_path: Path) -> None:
    proc = _start(["demo"], server.url, tmp_path)
    with redis.Redis(port=server.port, db=1) as orderflow:
        _until(proc, lambda: orderflow.dbsize() > 0)
    stdout, stderr = _stop(proc, signal.SIGTERM)
    assert proc.returncode == 0, stderr
    _clean(stderr)
    assert "keys per store at the end of the demo" in stdout


def test_units_stop_with_sigterm_and_expect_exit_0() -> None:
    """systemctl stop sends SIGTERM; exit 0 is success, so no SuccessExitStatus=130 is needed."""
    for name in ("smarttrade-ingest.service", "smarttrade-exporter.service"):
        service = unit_settings(SYSTEMD / name)["Service"]
        assert service.get("KillSignal", ["SIGTERM"]) == ["SIGTERM"], name
        assert service.get("KillMode", ["control-group"]) in (["control-group"], ["mixed"]), name
        assert "130" not in " ".join(service.get("SuccessExitStatus", [])), name
        assert service.get("TimeoutStopSec"), name  # bounded: a stuck stop is killed


async def test_a_requested_stop_ends_a_run_even_when_its_cancel_was_lost(server, pools, settings) -> None:
    """redis-py can turn a cancellation inside a command into a retried ConnectionError, losing the
    cancel; the run loop checks the stop flag between chunks, so the signal still takes effect."""
    import asyncio

    from smarttrade import stopping
    from smarttrade.ingest.run import run_feed
    from smarttrade.ingest.sources import synthetic_feed

    feed = synthetic_feed(["DOL"], 1, None, 200.0, None, "")  # endless: only a stop ends it
    stopping.request("SIGTERM")
    try:
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(run_feed(pools, settings, feed, None), 30)
    finally:
        stopping.clear()
