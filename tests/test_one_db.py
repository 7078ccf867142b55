"""All stores on one database (every REDIS_DB_* = 0), end to end: the demo, an ingest killed with
kill -9 and resumed, and the ops commands, which must tell the stores apart by prefix."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis

from smarttrade.keyspace import Store, family_of
from smarttrade.redis.embedded import EmbeddedRedis
from tests.conftest import CliRunner, settings_for
from tests.test_ingest_reliability import checkpoint_seq, ingest, make_server, summary, wait_for_progress

__all__ = ["make_server"]  # the module-scoped server factory, shared with the reliability tests

ONE_DB = {f"REDIS_DB_{s.name}": "0" for s in Store}
REPLAY = [
    *("--json", "--synthetic", "--count", "120000", "--seed", "5"),
    *("--start-day", "2025-11-24", "--symbols", "DOL,WIN"),
]


def test_placement_puts_every_store_on_database_0() -> None:
    from smarttrade.redis.topology import Placement

    placement = Placement.from_settings(settings_for("redis://x", **{k.lower(): 0 for k in ONE_DB}))
    assert placement.one_db
    assert placement.groups() == [(0, tuple(Store))]
    assert placement.shared_with(Store.QUOTES) == [s for s in Store if s is not Store.QUOTES]


async def test_topology_hands_out_one_client_per_database(server: EmbeddedRedis) -> None:
    from smarttrade.redis.topology import Topology

    six = Topology.standalone(server.url, settings_for(server.url), 12)
    one = Topology.standalone(server.url, settings_for(server.url, **{k.lower(): 0 for k in ONE_DB}), 12)
    try:
        assert len({id(six.client(s)) for s in Store}) == 6
        assert len({id(one.client(s)) for s in Store}) == 1 and one.client(Store.CALC) is one.admin
        await one.ping()
        await one.client(Store.CONFIG).set("config:u:theme", '"dark"')
        assert await six.client(Store.QUOTES).get("config:u:theme") == b'"dark"'  # database 0
        assert await six.client(Store.CONFIG).get("config:u:theme") is None
        assert six.dbs(Store.ORDERFLOW, Store.FOOTPRINT, Store.CALC) == (1, 2, 3)
        assert one.dbs(Store.ORDERFLOW, Store.FOOTPRINT, Store.CALC) == (0, 0, 0)
    finally:
        await six.aclose()
        await one.aclose()


def _everything(server: EmbeddedRedis, dbs: range) -> dict[str, Any]:
    """Every key's value, whatever its db (streams, checkpoints, ops figures aside: run times)."""
    out: dict[str, Any] = {}
    for n in dbs:
        with redis.Redis(port=server.port, db=n) as r:
            for key in r.scan_iter(count=5000):
                if key.startswith((b"ingest:", b"stream:", b"ops:")):
                    continue
                kind = r.type(key)
                value = {
                    b"string": r.get,
                    b"hash": r.hgetall,
                    b"zset": lambda k: r.zrange(k, 0, -1, withscores=True),
                }[kind](key)
                assert key.decode() not in out, f"{key!r} in two dbs"
                out[key.decode()] = value
    return out


def _ingest_one_db(url: str, cwd: Path) -> subprocess.Popen[str]:
    return ingest(url, cwd, *REPLAY, env=ONE_DB)


def test_ingest_killed_and_resumed_on_one_db_equals_the_six_db_run(make_server, tmp_path: Path) -> None:
    six = make_server("six-dbs")
    (tmp_path / "six").mkdir()
    proc = ingest(six.url, tmp_path / "six", *REPLAY)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    expected = _everything(six, range(16))

    one = make_server("one-db")
    kills = 0
    for _ in range(2):
        proc = _ingest_one_db(one.url, tmp_path)
        wait_for_progress(one, proc, checkpoint_seq(one))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        kills += 1
    assert kills >= 1, "the replay finished before any kill"
    proc = _ingest_one_db(one.url, tmp_path)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert summary(stdout)["resumed"] > 0, stdout  # it went on from what the killed runs committed
    for n in range(1, 16):
        with redis.Redis(port=one.port, db=n) as r:
            assert r.dbsize() == 0, f"db {n} used in the one-db layout"
    assert _everything(one, range(1)) == expected


def _json(cli: CliRunner, *args: str) -> Any:
    result = cli.smarttrade(*args, env=ONE_DB)
    assert result.returncode == 0, (args, result.stderr)
    return json.loads(result.stdout)


@pytest.mark.one_binary
def test_demo_and_ops_commands_on_one_db(cli: CliRunner, tmp_path: Path) -> None:
    demo = cli.smarttrade("demo", "--duration", "2", env=ONE_DB)
    assert demo.returncode == 0, demo.stderr
    with redis.Redis(port=cli.server.port) as r:
        for n in range(1, 16):
            with redis.Redis(port=cli.server.port, db=n) as other:
                assert other.dbsize() == 0, f"db {n} used in the one-db layout"
        # The demo's live figures expire 30 s after it stopped: gone now, so the counts hold still.
        r.delete(*r.scan_iter(match="ops:ingest:*", count=100))
        total = r.dbsize()
        assert total > 0
        r.set("foreign:key", "not ours")  # someone else's key in the same database
        r.set("quote:DOL:1", "{}")  # a quote without its TTL, for cleanup

    rows = {row["store"]: row for row in _json(cli, "stats", "--json", "--sample", "0")}
    counted = {store: row["keys"] for store, row in rows.items()}
    assert counted["quotes"] > 0 and counted["footprint"] > 0 and counted["orderflow"] > 0
    assert counted["sessions"] >= 1  # the demo user
    assert sum(counted.values()) == total + 1  # every key once (the foreign one in none)
    assert all(row["db_keys"] == total + 2 for row in rows.values())

    listing = cli.smarttrade("keys", "footprint", "--limit", "100000", env=ONE_DB)
    assert listing.returncode == 0, listing.stderr
    listed = [line.split("\t")[0] for line in listing.stdout.splitlines() if line]
    assert len(listed) == counted["footprint"]
    assert all(family_of(k, Store.FOOTPRINT) for k in listed) and any(
        k.startswith("footprint:") for k in listed
    )

    ttl = _json(cli, "ttl", "quotes", "--json")
    assert ttl["missing_ttl"] == 1 and ttl["keys"] == counted["quotes"]
    fixed = _json(cli, "cleanup", "quotes", "--apply", "--json")
    assert fixed[0]["fixed"] == 1
    assert _json(cli, "ttl", "quotes", "--json")["missing_ttl"] == 0

    file = tmp_path / "footprint.jsonl"
    exported = _json(cli, "export", "footprint", str(file), "--json")
    assert exported["keys"] == counted["footprint"]
    entries = [json.loads(line) for line in file.read_text().splitlines()[1:]]
    assert len(entries) == counted["footprint"]

    refused = cli.smarttrade("flush", "footprint", "--yes", "--flushdb", env=ONE_DB)
    assert refused.returncode == 2 and "would also delete" in refused.stderr, refused.stderr
    flushed = cli.smarttrade("flush", "footprint", "--yes", env=ONE_DB)
    assert flushed.returncode == 0, flushed.stderr
    after = {row["store"]: row["keys"] for row in _json(cli, "stats", "--json", "--sample", "0")}
    assert after["footprint"] == 0
    assert {s: n for s, n in after.items() if s != "footprint"} == {
        s: n for s, n in counted.items() if s != "footprint"
    }  # no other store's key went with it (the demo has stopped: nothing expired in seconds)
    with redis.Redis(port=cli.server.port) as r:
        assert r.get("foreign:key") == b"not ours"

    restored = _json(cli, "import", str(file), "--json")
    assert restored["restored"] == counted["footprint"], restored
    again = {row["store"]: row["keys"] for row in _json(cli, "stats", "--json", "--sample", "0")}
    assert again["footprint"] == counted["footprint"]
