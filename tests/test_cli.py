"""The `smarttrade` command as a user runs it: real processes, real servers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from smarttrade.models import Trade
from smarttrade.redis.embedded import STATE_FILE
from smarttrade.stores import Stores
from tests.conftest import redis_cli_binary, run_smarttrade


def test_cannot_reach_redis_is_one_line_and_exit_2(tmp_path: Path) -> None:
    env = {**os.environ, "REDIS_URL": "redis://127.0.0.1:1", "SMARTTRADE_DATA_DIR": str(tmp_path)}
    for command in (["status"], ["stats"], ["get", "calc:DOL:rsi"], ["demo", "--duration", "1"]):
        result = run_smarttrade(*command, env=env)
        assert result.returncode == 2, command
        assert result.stderr.strip() == "cannot reach Redis at redis://127.0.0.1:1: Connection refused"
        assert "Traceback" not in result.stdout + result.stderr


def test_status(cli) -> None:
    result = cli.smarttrade("status")
    assert result.returncode == 0, result.stderr
    assert cli.server.url in result.stdout
    assert re.search(r"version\s+\d+\.\d+", result.stdout)
    assert "volatile-lru" in result.stdout
    data = json.loads(cli.smarttrade("status", "--json").stdout)
    assert data["mode"] == "standalone" and data["role"] == "master"
    assert [(s["store"], s["db"], s["ttl"]) for s in data["stores"]] == [
        ("quotes", 0, 60),
        ("orderflow", 1, 300),
        ("footprint", 2, 600),
        ("calc", 3, 1800),
        ("sessions", 4, 3600),
        ("config", 5, None),
    ]


def test_status_with_redis_url_starts_nothing(cli, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    result = cli.smarttrade("status", env={"SMARTTRADE_DATA_DIR": str(data_dir)})
    assert result.returncode == 0, result.stderr
    assert cli.server.url in result.stdout
    assert not (data_dir / STATE_FILE).exists()
    assert not data_dir.exists() or not any(data_dir.iterdir())  # no redis.conf, no lock, no log


def test_a_dotenv_where_the_tests_run_does_not_steer_the_command(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("REDIS_TTL_QUOTES=0\nREDIS_DB_CONFIG=99\n")
    result = cli.smarttrade("status")
    assert result.returncode == 0, result.stderr


async def test_stats_counts_expiring_and_persistent(cli, stores: Stores) -> None:
    await stores.footprint.apply("WIN", {125000: (1, 0), 125005: (0, 1)})
    await stores.configs.set("u", "theme", "dark")
    cli.redis("-n", "3", "SET", "calc:WIN:stale", '{"value":1}')  # no TTL: shows as persistent
    rows = {r["store"]: r for r in json.loads(cli.smarttrade("stats", "--json").stdout)}
    assert (rows["footprint"]["keys"], rows["footprint"]["expiring"]) == (2, 2)
    assert (rows["config"]["keys"], rows["config"]["persistent"]) == (1, 1)
    assert (rows["calc"]["keys"], rows["calc"]["persistent"]) == (1, 1)
    table = cli.smarttrade("stats").stdout
    assert re.search(r"footprint\s+│\s+2\s+│\s+2\s+│\s+2\s+│\s+0", table)


async def test_get_prints_decoded_json(cli, stores: Stores) -> None:
    await stores.footprint.add_trades("DOL", [Trade(price=5234.5, volume=3, side="buy", time=1)])
    result = cli.smarttrade("get", "footprint:DOL:5234500", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "price": 5234.5,
        "buy_volume": 3,
        "sell_volume": 0,
        "total_volume": 3,
        "imbalance": 1.0,
    }
    pretty = cli.smarttrade("get", "footprint:DOL:5234500")
    assert "TTL" in pretty.stderr and '"buy_volume": 3' in pretty.stdout
    cli.redis("-n", "5", "SET", "config:user123:theme", "dark")
    assert json.loads(cli.smarttrade("get", "config:user123:theme", "--json").stdout) == "dark"


def test_get_errors(cli) -> None:
    missing = cli.smarttrade("get", "calc:DOL:rsi")
    assert missing.returncode == 1 and "not found" in missing.stderr
    bad = cli.smarttrade("get", "nonsense:1")
    assert bad.returncode == 1 and "not one of our keys" in bad.stderr
    assert all(p in bad.stderr for p in ("quote:", "bar:", "fpbar:", "stream:", "ingest:", "instruments:"))
    cli.redis("-n", "0", "SET", "quote:DOL:1", '{"price":"abc"}')
    corrupt = cli.smarttrade("get", "quote:DOL:1")
    assert corrupt.returncode == 1
    assert corrupt.stderr.strip() == "quote:DOL:1: Expected float, got str - at $.price"


def test_demo_on_the_embedded_server(tmp_path: Path) -> None:
    """`smarttrade demo --duration N` with no REDIS_URL: its own server, every store filled."""
    env = {**os.environ, "SMARTTRADE_DATA_DIR": str(tmp_path), "COLUMNS": "200"}
    env.pop("REDIS_URL", None)
    exe = Path(sys.executable).parent / "smarttrade"
    (tmp_path / "cwd").mkdir()
    demo = subprocess.Popen(
        [str(exe), "demo", "--duration", "6", "--seed", "7"],
        env=env,
        cwd=tmp_path / "cwd",  # no .env from wherever pytest runs
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / STATE_FILE).exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        port = json.loads((tmp_path / STATE_FILE).read_text())["port"]
        time.sleep(1.5)
        cli = [redis_cli_binary(), "-p", str(port), "-n", "2"]
        keys = subprocess.run(
            [*cli, "--scan", "--pattern", "footprint:*"], capture_output=True, text=True, check=True
        ).stdout.split()
        assert keys and all(re.fullmatch(r"footprint:(DOL|WDO|WIN):\d+", k) for k in keys)
        value = json.loads(subprocess.run([*cli, "GET", keys[0]], capture_output=True, text=True).stdout)
        assert set(value) == {"price", "buy_volume", "sell_volume", "total_volume", "imbalance"}
        assert value["total_volume"] == value["buy_volume"] + value["sell_volume"]
        stdout, stderr = demo.communicate(timeout=60)
    finally:
        demo.kill()
    assert demo.returncode == 0, stderr
    assert (
        stdout.splitlines()[0]
        == f"Redis: redis://127.0.0.1:{port} (embedded, started for this run; data in {tmp_path})"
    )
    for store in ("quotes", "order flow", "footprint", "calculations", "sessions", "user settings"):
        row = re.search(rf"^│ {store}\s+│\s+\d+\s+│\s+(\d+)\s+│", stdout, re.M)
        assert row and int(row[1]) > 0, f"{store} has no keys:\n{stdout}"
    assert not (tmp_path / STATE_FILE).exists()  # the server it started is stopped
