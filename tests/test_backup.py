"""Backup -> flush -> restore of the embedded server, and per-store export/import, against real
servers: every key, value and TTL comes back (expiry within 2 s)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from smarttrade.errors import SmartTradeError
from smarttrade.keyspace import Store, family_of
from smarttrade.ops import transfer
from smarttrade.ops.backup import list_backups, prune, verify_file
from smarttrade.redis.embedded import STATE_FILE, EmbeddedRedis, recorded, server_pid
from smarttrade.settings import Settings
from smarttrade.stores import Stores
from tests.conftest import run_smarttrade

DATA = Path(__file__).parent / "data"
Snapshot = dict[tuple[int, bytes], tuple[str, Any, int | None]]  # (db, key) -> (type, value, expiry ms)


def _value(client: redis.Redis, key: bytes, kind: str) -> Any:
    match kind:
        case "string":
            return client.get(key)
        case "hash":
            return client.hgetall(key)
        case "zset":
            return client.zrange(key, 0, -1, withscores=True)
        case "stream":
            return client.xrange(key)
        case "set":
            return client.smembers(key)
        case "list":
            return client.lrange(key, 0, -1)
    raise AssertionError(f"unexpected type {kind} for {key!r}")


def snapshot(port: int, dbs: range = range(6), only: Store | None = None) -> Snapshot:
    """Every key's type, value and absolute expiry (server clock, ms)."""
    out: Snapshot = {}
    for db in dbs:
        with redis.Redis(port=port, db=db) as client:
            for key in client.scan_iter(count=1000):
                if only is not None and not family_of(key.decode(), only):
                    continue
                kind = client.type(key).decode()
                if kind == "none":  # expired between SCAN and TYPE (the 30 s ingest figures)
                    continue
                pttl = client.pttl(key)
                seconds, micros = client.time()
                now_ms = seconds * 1000 + micros // 1000
                out[(db, key)] = (kind, _value(client, key, kind), now_ms + pttl if pttl >= 0 else None)
    return out


def assert_same(before: Snapshot, after: Snapshot, port: int) -> None:
    """Keys still alive by the clock come back with the same type, value and expiry (within 2 s)."""
    with redis.Redis(port=port) as client:
        seconds, micros = client.time()
    now_ms = seconds * 1000 + micros // 1000
    alive = {k: v for k, v in before.items() if v[2] is None or v[2] > now_ms + 3000}
    assert len(alive) > 50  # the comparison means something
    for key, (kind, value, expiry) in alive.items():
        assert key in after, f"{key} missing after the restore"
        got_kind, got_value, got_expiry = after[key]
        assert (got_kind, got_value) == (kind, value), key
        if expiry is None:
            assert got_expiry is None, key
        else:
            assert got_expiry is not None and abs(got_expiry - expiry) <= 2000, (key, expiry, got_expiry)
    assert set(after) <= set(before), set(after) - set(before)


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "SMARTTRADE_DATA_DIR": str(data_dir), "COLUMNS": "200", **extra}


def _ok(result: Any) -> None:
    assert result.returncode == 0, result.stderr + result.stdout
    assert "Traceback" not in result.stderr


@pytest.fixture
def embedded(tmp_path: Path, binary: str) -> Any:
    """An embedded server as `smarttrade` starts it (trading profile, server.json), for commands to
    attach to; whatever server runs in the folder at the end is stopped."""
    data_dir = tmp_path / "data"
    server = EmbeddedRedis(data_dir=data_dir, config={"maxmemory": "512mb"}, binary=binary)
    server.start()
    assert server.process is not None
    (data_dir / STATE_FILE).write_text(json.dumps({"pid": server.process.pid, "port": server.port}))
    yield data_dir, server
    pid, port = recorded(data_dir / STATE_FILE)
    if pid and port and server_pid(port) == pid:
        EmbeddedRedis(data_dir=data_dir, port=port).shutdown_remote(pid, save=False)
    server.stop(save=False)


def test_backup_flush_restore_gives_back_every_key(embedded: Any, tmp_path: Path) -> None:
    data_dir, server = embedded
    env = _env(data_dir)
    _ok(run_smarttrade("demo", "--duration", "3", "--rate", "200", env=env))
    before = snapshot(server.port)
    assert {db for db, _ in before} == set(range(6))  # all six stores hold data

    result = run_smarttrade("backup", "--json", env=env)
    _ok(result)
    info = json.loads(result.stdout)
    backup = Path(info["file"])
    assert backup.parent == data_dir / "backups" and backup.stat().st_size == info["bytes"]
    assert Path(str(backup) + ".sha256").read_text().split()[0] == info["sha256"]
    assert verify_file(backup) == info["sha256"]

    for store in Store:
        extra = ["--include-user-settings"] if store is Store.CONFIG else []
        _ok(run_smarttrade("flush", store.value, "--yes", *extra, env=env))
    left = [key for _, key in snapshot(server.port) if not key.startswith(b"ingest:")]
    assert not left, left  # only the checkpoints stay

    result = run_smarttrade("restore", str(backup), "--yes", env=env)
    _ok(result)
    assert "restored" in result.stdout
    pid, port = recorded(data_dir / STATE_FILE)
    assert port == server.port and pid != server.process.pid  # a new server, on the same port
    after = snapshot(port)
    assert_same(before, after, port)
    with redis.Redis(port=port) as client:
        assert client.config_get("appendonly") == {"appendonly": "yes"}  # AOF back on, rewritten

    # The AOF alone now carries the data: stop without saving, start again, nothing is lost.
    assert pid is not None
    EmbeddedRedis(data_dir=data_dir, port=port).shutdown_remote(pid, save=False)
    result = run_smarttrade("stop", env=env)  # nothing runs any more
    _ok(result)
    assert "no embedded server runs" in result.stdout
    again = EmbeddedRedis(data_dir=data_dir, config={"maxmemory": "512mb"}, binary=server.binary)
    again.start()
    try:
        assert_same(before, snapshot(again.port), again.port)
    finally:
        again.stop(save=False)


def _backed_up_theme(server: EmbeddedRedis, env: dict[str, str]) -> Path:
    """A user setting, then `smarttrade backup`; the backup file."""
    with redis.Redis(port=server.port, db=5) as client:
        client.set("config:u1:theme", '"dark"')
    result = run_smarttrade("backup", "--json", env=env)
    _ok(result)
    return Path(json.loads(result.stdout)["file"])


def test_restore_refuses_a_damaged_file_and_keeps_the_data(embedded: Any, tmp_path: Path) -> None:
    data_dir, server = embedded
    env = _env(data_dir)
    backup = _backed_up_theme(server, env)
    damaged = tmp_path / backup.name
    damaged.write_bytes(backup.read_bytes()[:-20] + b"\0" * 20)
    Path(str(damaged) + ".sha256").write_text(Path(str(backup) + ".sha256").read_text())

    result = run_smarttrade("restore", str(damaged), "--yes", env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "does not match" in result.stderr
    result = run_smarttrade("restore", "--check", str(damaged), env=env)
    assert result.returncode == 1 and "sha256" in result.stderr
    # Without a checksum file, redis-check-rdb still catches it.
    Path(str(damaged) + ".sha256").unlink()
    result = run_smarttrade("restore", str(damaged), "--yes", env=env)
    assert result.returncode == 1 and "not a valid RDB" in result.stderr, result.stderr
    with redis.Redis(port=server.port, db=5) as client:  # the running server was never touched
        assert client.get("config:u1:theme") == b'"dark"'


def test_restore_when_the_server_is_stopped_leaves_it_stopped(embedded: Any) -> None:
    data_dir, server = embedded
    env = _env(data_dir)
    backup = _backed_up_theme(server, env)
    with redis.Redis(port=server.port, db=5) as client:
        client.set("config:u1:theme", '"light"')
    server.stop(save=True)
    _ok(run_smarttrade("restore", str(backup), "--yes", env=env))
    after = run_smarttrade("get", "config:u1:theme", "--json", env=env)  # starts the server on the files
    _ok(after)
    assert json.loads(after.stdout) == "dark"
    server.start()  # a server another command attaches to, as after a restore; `stop` ends it
    assert server.process is not None
    (data_dir / STATE_FILE).write_text(json.dumps({"pid": server.process.pid, "port": server.port}))
    result = run_smarttrade("stop", env=env)
    _ok(result)
    assert f"port {server.port} (saved)" in result.stdout and not (data_dir / STATE_FILE).exists()
    assert server.process.wait(timeout=10) == 0
    assert any(p.name.startswith("pre-restore-") for p in data_dir.iterdir())


def test_backup_keeps_the_newest_n(tmp_path: Path) -> None:
    folder = tmp_path / "b"
    folder.mkdir()
    names = [f"smarttrade-2026010{i}T000000000000Z.rdb" for i in range(1, 6)]
    for name in names:
        (folder / name).write_bytes(b"x")
        (folder / (name + ".sha256")).write_text("00  x\n")
    (folder / "unrelated.rdb").write_bytes(b"y")
    removed = prune(folder, 2)
    assert [p.name for p in removed] == names[:3]
    assert [b.path.name for b in list_backups(folder)] == names[3:]
    assert (folder / "unrelated.rdb").exists() and not (folder / (names[0] + ".sha256")).exists()


# -- export / import -------------------------------------------------------------------------------


async def _fill(stores: Stores, settings: Settings, server_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "REDIS_URL": server_url, "COLUMNS": "200"}
    dead = tmp_path / "dead.jsonl"
    result = run_smarttrade(
        "ingest", "--format", "b3", str(DATA / "b3_trades.txt"), "--dead-letter", str(dead), env=env
    )
    _ok(result)
    await stores.sessions.open("u1", "sock1", ["DOL", "WIN"])
    await stores.configs.set("u1", "theme", "dark")
    await stores.configs.set("u1", "symbols", ["DOL", "WIN"])


async def test_export_import_each_store(
    stores: Stores, settings: Settings, server: Any, tmp_path: Path, pools: Any
) -> None:
    await _fill(stores, settings, server.url, tmp_path)
    total = 0
    for store in Store:
        db = settings.db(store)
        before = snapshot(server.port, range(db, db + 1), store)
        assert before, f"no {store.value} keys to export"
        client = pools.client(store)
        file = tmp_path / f"{store.value}.jsonl"
        exported = await transfer.export_store(client, server.url, store, db, file)
        assert exported.keys == len(before)
        with redis.Redis(port=server.port, db=db) as raw:
            raw.delete(*[key for (_db, key) in before])
        assert not snapshot(server.port, range(db, db + 1), store)
        imported = await transfer.import_store(client, server.url, file, replace=False)
        assert (imported.restored, imported.existed) == (len(before), 0)
        assert_same_small(before, snapshot(server.port, range(db, db + 1), store))
        again = await transfer.import_store(client, server.url, file, replace=False)
        assert (again.restored, again.existed) == (0, len(before))  # kept as they were
        replaced = await transfer.import_store(client, server.url, file, replace=True)
        assert replaced.restored == len(before)
        total += len(before)
    assert total > 50


def assert_same_small(before: Snapshot, after: Snapshot) -> None:
    assert set(after) == set(before)
    for key, (kind, value, expiry) in before.items():
        got_kind, got_value, got_expiry = after[key]
        assert (got_kind, got_value) == (kind, value), key
        assert (expiry is None) == (got_expiry is None), key
        if expiry is not None and got_expiry is not None:
            assert abs(got_expiry - expiry) <= 2000, key


def test_export_import_through_the_cli(cli: Any, server: Any, tmp_path: Path) -> None:
    with redis.Redis(port=server.port, db=5) as client:
        client.set("config:u1:theme", '"dark"')
        client.set("config:u2:theme", '"light"')
        client.set("someone-elses-key", "x")  # in the same db, not ours: never exported
    with redis.Redis(port=server.port, db=4) as client:
        client.set("session:u1", "{}", ex=100)
    file = tmp_path / "cfg.jsonl"
    result = cli.smarttrade("export", "config", str(file))
    _ok(result)
    assert "2 keys exported" in result.stdout
    assert len(file.read_text().splitlines()) == 3  # header + 2 keys
    result = cli.smarttrade("flush", "config", "--yes")
    assert result.returncode == 2 and "--include-user-settings" in result.stderr
    _ok(cli.smarttrade("flush", "config", "--yes", "--include-user-settings"))
    with redis.Redis(port=server.port, db=5) as client:
        assert client.keys("config:*") == [] and client.get("someone-elses-key") == b"x"
    result = cli.smarttrade("import", str(file))
    _ok(result)
    assert "2 keys restored" in result.stdout
    with redis.Redis(port=server.port, db=5) as client:
        assert client.get("config:u2:theme") == b'"light"' and client.ttl("config:u2:theme") == -1
    # An expired key is skipped, not resurrected.
    session_file = tmp_path / "sessions.jsonl"
    _ok(cli.smarttrade("export", "sessions", str(session_file)))
    lines = session_file.read_text().splitlines()
    entry = json.loads(lines[1])
    entry["x"] = int(time.time() * 1000) - 1000
    session_file.write_text("\n".join([lines[0], json.dumps(entry)]) + "\n")
    with redis.Redis(port=server.port, db=4) as client:
        client.delete("session:u1")
    result = cli.smarttrade("import", str(session_file))
    _ok(result)
    assert "0 keys restored, 1 expired" in result.stdout


def test_import_names_the_bad_line(cli: Any, tmp_path: Path) -> None:
    file = tmp_path / "bad.jsonl"
    header = json.dumps({"format": transfer.FORMAT, "version": 1, "store": "config", "db": 5})
    file.write_text(header + "\n" + '{"k": "!!", "x": null, "v": ""}\n')
    result = cli.smarttrade("import", str(file))
    assert result.returncode == 1 and "line 2" in result.stderr and "Traceback" not in result.stderr
    file.write_text(header + "\n" + json.dumps({"k": "cXVvdGU6RE9MOjE=", "x": None, "v": "AA=="}) + "\n")
    result = cli.smarttrade("import", str(file))  # quote:DOL:1 is not a config key
    assert result.returncode == 1 and "is not a config key" in result.stderr
    file.write_text("not json\n")
    result = cli.smarttrade("import", str(file))
    assert result.returncode == 1 and "not an export file" in result.stderr


@hsettings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_import_lines_fuzz(line: str) -> None:
    """Any line either parses to (key, expiry, payload) or raises TransferError naming the line."""
    try:
        key, expiry, payload = transfer._entry(line, 7, Path("f.jsonl"))
    except SmartTradeError as exc:
        assert "f.jsonl line 7" in str(exc)
    else:
        assert isinstance(key, bytes) and isinstance(payload, bytes)
        assert expiry is None or (isinstance(expiry, int) and expiry >= 0)
