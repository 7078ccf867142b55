"""Issue 9 item 12: expected failures end with one line and an exit code, never a traceback."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from smarttrade.redis.embedded import free_port
from tests.conftest import run_smarttrade, start_server


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "SMARTTRADE_DATA"))}
    return {**env, "COLUMNS": "200", **extra}


def _one_clean_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


HTTP_400 = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


@pytest.fixture
def http_400() -> Iterator[int]:
    """A tiny non-Redis service on loopback: every request gets ``HTTP/1.1 400 Bad Request``."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                try:
                    conn.settimeout(2)
                    conn.recv(4096)
                    conn.sendall(HTTP_400)
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(timeout=5)
    listener.close()


@pytest.mark.parametrize("command", [["status"], ["stats"], ["ingest", "--synthetic", "--count", "10"]])
def test_redis_url_to_a_non_redis_service(http_400: int, command: list[str]) -> None:
    url = f"redis://127.0.0.1:{http_400}"
    proc = run_smarttrade(*command, env=_env(REDIS_URL=url), timeout=60)
    line = _one_clean_line(proc.stderr)
    assert proc.returncode == 2
    assert line.startswith(f"cannot reach Redis at {url}: not a Redis server"), line


# Refused before anything connects: a closed port, so a check that came too late would show as
# "cannot reach Redis" instead of the option's own message.
BAD_OPTIONS = [
    (["ingest", "--synthetic", "--symbols", "", "--count", "10"], "--symbols", "no symbol given"),
    (["ingest", "--synthetic", "--symbols", " , ", "--count", "10"], "--symbols", "no symbol given"),
    (["ingest", "--synthetic", "--seed", "-1", "--count", "10"], "--seed", ""),
    (["ingest", "--synthetic", "--duration", "inf"], "--duration", "finite"),
    (["demo", "--symbols", ""], "--symbols", "no symbol given"),
    (["demo", "--seed", "-1", "--duration", "1"], "--seed", ""),
    (["demo", "--duration", "-5"], "--duration", "positive"),
    (["demo", "--duration", "nan"], "--duration", "finite"),
    (["demo", "--duration", "inf"], "--duration", "finite"),
]


@pytest.mark.parametrize(("args", "option", "reason"), BAD_OPTIONS)
def test_bad_options_are_refused_up_front(args: list[str], option: str, reason: str) -> None:
    proc = run_smarttrade(*args, env=_env(REDIS_URL=f"redis://127.0.0.1:{free_port()}"), timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "cannot reach Redis" not in proc.stderr
    assert option in proc.stderr and reason in proc.stderr, proc.stderr


BAD_SETTINGS = [
    ({"SMARTTRADE_MAXMEMORY": "1"}, "SMARTTRADE_MAXMEMORY: must be at least 32mb"),
    ({"SMARTTRADE_MAXMEMORY": "31mb"}, "SMARTTRADE_MAXMEMORY: must be at least 32mb"),
    ({"SMARTTRADE_FULL_WAIT": "0"}, "SMARTTRADE_FULL_WAIT: must be a positive number"),
    # each critical level below (for the hit rate: above) its warning level is refused
    (
        {"SMARTTRADE_ALERT_MEMORY_WARN": "400mb", "SMARTTRADE_ALERT_MEMORY_CRIT": "100mb"},
        "SMARTTRADE_ALERT_MEMORY_CRIT: must be at least the warning level",
    ),
    (
        {"SMARTTRADE_ALERT_MEMORY_WARN": "95%", "SMARTTRADE_ALERT_MEMORY_CRIT": "90%"},
        "SMARTTRADE_ALERT_MEMORY_CRIT: must be at least the warning level",
    ),
    ({"SMARTTRADE_ALERT_CLIENTS_CRIT": "10"}, "SMARTTRADE_ALERT_CLIENTS_CRIT: must be at least the"),
    ({"SMARTTRADE_ALERT_HIT_RATE_CRIT": "0.9"}, "SMARTTRADE_ALERT_HIT_RATE_CRIT: must be at most the"),
    ({"SMARTTRADE_ALERT_OPS_CRIT": "10"}, "SMARTTRADE_ALERT_OPS_CRIT: must be at least the"),
    (
        {"SMARTTRADE_ALERT_BACKUP_CRIT_HOURS": "1"},
        "SMARTTRADE_ALERT_BACKUP_CRIT_HOURS: must be at least the warning",
    ),
]


@pytest.mark.parametrize(("settings", "message"), BAD_SETTINGS)
def test_bad_settings_are_refused(settings: dict[str, str], message: str) -> None:
    proc = run_smarttrade("alerts", env=_env(REDIS_URL=f"redis://127.0.0.1:{free_port()}", **settings))
    assert proc.returncode == 2
    assert _one_clean_line(proc.stderr).startswith(message), proc.stderr


def test_mixed_memory_levels_are_judged_on_the_server(tmp_path: Path) -> None:
    """A size and a share of maxmemory only compare against a server's maxmemory: accepted."""
    env = _env(
        SMARTTRADE_DATA_DIR=str(tmp_path),
        SMARTTRADE_ALERT_MEMORY_WARN="400mb",
        SMARTTRADE_ALERT_MEMORY_CRIT="90%",
        SMARTTRADE_MAXMEMORY="32mb",
    )
    proc = run_smarttrade("status", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "of 32 MiB" in proc.stdout  # the minimum is a usable server


@pytest.mark.parametrize("feed", ["synthetic", "file"])
def test_a_replay_gives_up_on_a_redis_that_stays_full(tmp_path: Path, binary: str, feed: str) -> None:
    server = start_server(tmp_path / "full", binary, maxmemory="24mb")
    trades = tmp_path / "dol.csv"  # a file source writes its record before the first commit
    trades.write_text(
        "symbol,price,volume,side,time,trade_id\n"
        + "".join(f"DOL,{5300 + (i % 5) * 0.5},1,buy,{1_764_590_400 + i},t{i}\n" for i in range(200))
    )
    source = ["--synthetic", "--count", "100000"] if feed == "synthetic" else ["--format", "csv", str(trades)]
    try:
        with redis.Redis(port=server.port, db=5) as filler, pytest.raises(redis.exceptions.OutOfMemoryError):
            for i in range(10_000):
                filler.set(f"config:filler:{i}", "x" * 10_000)  # permanent: nothing evictable
        started = time.monotonic()
        proc = run_smarttrade(
            "ingest",
            *source,
            "--dead-letter",
            str(tmp_path / "dead.jsonl"),
            env=_env(REDIS_URL=server.url, SMARTTRADE_FULL_WAIT="2"),
            timeout=120,
        )
        assert proc.returncode == 2, proc.stderr
        assert time.monotonic() - started < 100
        assert "Traceback" not in proc.stderr
        last = proc.stderr.strip().splitlines()[-1]
        assert "refused a write: maxmemory reached" in last
        assert "still full after" in last and "SMARTTRADE_FULL_WAIT" in last
    finally:
        server.stop(save=False)
