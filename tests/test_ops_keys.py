"""Inspect and maintain commands against a real server: info, stats, keys (paged SCAN), ttl,
cleanup, flush, slowlog and latency. Only the store's own keys are ever touched."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis

from smarttrade.keyspace import FAMILIES, Store, family_of
from smarttrade.ops import keys
from smarttrade.ops.server import Admin
from smarttrade.settings import Settings

DATA = Path(__file__).parent / "data"


def _ok(result: Any) -> Any:
    assert result.returncode == 0, result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    return result


@pytest.fixture
def filled(cli: Any, server: Any, tmp_path: Path) -> Any:
    """The b3 fixture ingested, a user's settings, and someone else's keys beside ours."""
    _ok(
        cli.smarttrade(
            "ingest", "--format", "b3", str(DATA / "b3_trades.txt"), "--dead-letter", str(tmp_path / "d")
        )
    )
    with redis.Redis(port=server.port, db=5) as r:
        r.set("config:u1:theme", '"dark"')
    for db in range(6):
        with redis.Redis(port=server.port, db=db) as r:
            r.set(f"foreign:{db}", "not ours")  # must survive every command here
    return cli


def _foreign_intact(port: int) -> None:
    for db in range(6):
        with redis.Redis(port=port, db=db) as r:
            assert r.get(f"foreign:{db}") == b"not ours"


def test_info_sections(filled: Any) -> None:
    data = json.loads(_ok(filled.smarttrade("info", "--json")).stdout)
    assert set(data) == {"server", "clients", "memory", "stats", "persistence", "replication"}
    assert data["server"]["redis_version"] and data["memory"]["used_memory"] > 0
    text = _ok(filled.smarttrade("info", "memory")).stdout
    assert "mem_fragmentation_ratio" in text and "allocator_frag_ratio" in text
    bad = filled.smarttrade("info", "everything")
    assert bad.returncode == 2 and "is not one of" in bad.stderr


def test_stats_estimates_memory_and_ttls(filled: Any) -> None:
    rows = json.loads(_ok(filled.smarttrade("stats", "--json", "--sample", "50")).stdout)
    by_store = {r["store"]: r for r in rows}
    assert by_store["footprint"]["keys"] > 0
    fp = by_store["footprint"]
    assert fp["memory_estimate_bytes"] > 0 and fp["sampled"] > 0
    assert sum(fp["ttl_sample"].values()) == fp["sampled"]
    text = _ok(filled.smarttrade("stats", "--sample", "20")).stdout
    assert "estimate" in text


def test_keys_pages_through_the_store(filled: Any, server: Any) -> None:
    with redis.Redis(port=server.port, db=2) as r:
        for level in range(300):  # enough keys for SCAN to take many pages
            r.set(f"footprint:DOL:{5_000_000 + level}", "{}", ex=600)
        expected = {k.decode() for k in r.scan_iter(count=1000) if family_of(k.decode(), Store.FOOTPRINT)}
    assert len(expected) > 300
    pages = 0
    seen: list[str] = []
    cursor = "0"
    for _page in range(200):
        page = json.loads(
            _ok(filled.smarttrade("keys", "footprint", "--limit", "60", "--cursor", cursor, "--json")).stdout
        )
        seen += [row["key"] for row in page["keys"]]
        assert all(row["ttl"] > 0 for row in page["keys"])
        cursor = str(page["cursor"])
        pages += 1
        if cursor == "0":
            break
    assert pages > 3
    assert set(seen) == expected  # every key once the cursor comes back to 0; foreign:2 never listed
    only = json.loads(
        _ok(
            filled.smarttrade(
                "keys", "footprint", "--pattern", "footprint:WINZ25:*", "--limit", "1000", "--json"
            )
        ).stdout
    )
    assert only["keys"] and all(r["key"].startswith("footprint:WINZ25:") for r in only["keys"])


def test_ttl_report_and_cleanup(filled: Any, server: Any) -> None:
    with redis.Redis(port=server.port, db=0) as r:
        victim = next(k for k in r.scan_iter(match="quote:*", count=1000))
        r.persist(victim)
    report = json.loads(_ok(filled.smarttrade("ttl", "quotes", "--json")).stdout)
    assert report["missing_ttl"] == 1 and report["missing_examples"] == [victim.decode()]
    assert report["persistent"] >= 1  # the ingest checkpoints: permanent on purpose
    assert report["keys"] == sum(report["buckets"].values()) + report["persistent"] + report["missing_ttl"]

    dry = json.loads(_ok(filled.smarttrade("cleanup", "--json")).stdout)
    assert {r["store"]: r["missing"] for r in dry}["quotes"] == 1
    with redis.Redis(port=server.port, db=0) as r:
        assert r.ttl(victim) == -1  # a dry run changes nothing
    fixed = json.loads(_ok(filled.smarttrade("cleanup", "quotes", "--apply", "--json")).stdout)
    assert fixed[0]["fixed"] == 1
    with redis.Redis(port=server.port, db=0) as r:
        assert 0 < r.ttl(victim) <= 60
    with redis.Redis(port=server.port, db=5) as r:
        assert r.ttl("config:u1:theme") == -1  # user settings stay permanent
    _foreign_intact(server.port)


async def test_cleanup_never_overrides_a_ttl_set_meanwhile(
    server: Any, settings: Settings, pools: Any
) -> None:
    client = pools.client(Store.QUOTES)
    await client.set("quote:DOL:1", "{}")
    await client.set("lastquote:DOL", "{}")
    result = await keys.cleanup(client, server.url, settings, Store.QUOTES, apply=True)
    assert result.fixed == 2
    assert 0 < await client.ttl("quote:DOL:1") <= settings.ttl(Store.QUOTES)
    assert await client.ttl("lastquote:DOL") > 3600  # its own family's TTL, not the store's
    script = client.register_script(keys.EXPIRE_IF_NONE)
    assert await script(keys=["quote:DOL:1"], args=[5]) == 0  # it has a TTL now: left alone


def test_flush_asks_and_deletes_only_the_store(filled: Any, server: Any) -> None:
    result = filled.smarttrade("flush", "quotes")  # no terminal to answer: nothing deleted
    assert result.returncode == 1 and "nothing deleted" in result.stderr
    with redis.Redis(port=server.port, db=0) as r:
        assert any(True for _ in r.scan_iter(match="quote:*", count=1000))
    piped = filled.smarttrade("flush", "quotes", input="y\n")  # `echo y | smarttrade flush` answers no
    assert piped.returncode == 1 and "not a terminal" in piped.stderr
    with redis.Redis(port=server.port, db=0) as r:
        assert any(True for _ in r.scan_iter(match="quote:*", count=1000))
    out = _ok(filled.smarttrade("flush", "quotes", "--yes")).stdout
    assert "SCAN+UNLINK" in out
    with redis.Redis(port=server.port, db=0) as r:
        left = sorted(k.decode() for k in r.scan_iter(count=1000))
    # the ingest checkpoints and the source record stay: a flush must not make a re-run count twice
    assert left[0] == "foreign:0" and left[1:] and all(k.startswith("ingest:") for k in left[1:])
    again = json.loads(
        _ok(filled.smarttrade("ingest", "--format", "b3", str(DATA / "b3_trades.txt"), "--json")).stdout
    )
    assert again["trades"] == 0 and again["resumed"] == 9
    with redis.Redis(port=server.port, db=1) as r:
        assert r.dbsize() > 1  # the order-flow store is untouched
    refused = filled.smarttrade("flush", "config", "--yes")
    assert refused.returncode == 2 and "--include-user-settings" in refused.stderr
    _foreign_intact(server.port)


def test_flush_with_flushdb(filled: Any, server: Any) -> None:
    result = _ok(filled.smarttrade("flush", "calc", "--yes", "--flushdb"))
    assert "SCAN+UNLINK" in result.stdout and "not calc keys" in result.stderr  # foreign:3 is there
    with redis.Redis(port=server.port, db=3) as r:
        assert r.keys() == [b"foreign:3"]
        r.delete("foreign:3")
        r.set("calc:DOL:rsi", "{}", ex=100)
    assert "FLUSHDB" in _ok(filled.smarttrade("flush", "calc", "--yes", "--flushdb")).stdout
    with redis.Redis(port=server.port, db=3) as r:
        assert r.dbsize() == 0


def test_flushdb_refuses_a_db_shared_with_another_store(filled: Any, server: Any) -> None:
    result = filled.smarttrade("flush", "calc", "--yes", "--flushdb", env={"REDIS_DB_CALC": "5"})
    assert result.returncode == 2 and "config" in result.stderr  # the settings store shares db 5
    with redis.Redis(port=server.port, db=5) as r:
        assert r.get("config:u1:theme") == b'"dark"'


def test_slowlog_and_latency(filled: Any, server: Any) -> None:
    with redis.Redis(port=server.port) as r:
        r.config_set("slowlog-log-slower-than", 0)  # our own server: log everything
        r.set("x", 1)
        r.config_set("latency-monitor-threshold", 1)
        r.eval("local i = 0 while i < 3000000 do i = i + 1 end return i", 0)  # a few ms busy
    try:
        log = json.loads(_ok(filled.smarttrade("slowlog", "100", "--json")).stdout)
        assert log["length"] > 0 and len(log["entries"]) <= 100
        assert any(e["command"].lower().startswith("eval local i = 0") for e in log["entries"])
        assert len(json.loads(_ok(filled.smarttrade("slowlog", "2", "--json")).stdout)["entries"]) == 2
        lat = json.loads(_ok(filled.smarttrade("latency", "--count", "30", "--json")).stdout)
        assert lat["samples"] == 30 and 0 < lat["p50_ms"] <= lat["p99_ms"] <= lat["max_ms"]
        assert any(event == "command" for event, *_ in lat["latest"])
        assert lat["doctor"]
    finally:
        with redis.Redis(port=server.port) as r:
            r.config_set("slowlog-log-slower-than", 10000)
            r.config_set("latency-monitor-threshold", 0)


async def test_memory_estimate_scales_the_sample(server: Any, settings: Settings, pools: Any) -> None:
    client = pools.client(Store.FOOTPRINT)
    for i in range(300):
        await client.set(f"footprint:DOL:{5000000 + i}", "x" * 100, ex=600)
    for i in range(100):
        await client.set(f"foreign:{i}", "y")
    admin = Admin(pools.admin, settings, server.url)
    est = await keys.memory_estimate(admin, client, Store.FOOTPRINT, db_keys=400, sample=50)
    assert est is not None and est.sampled == 50
    assert 0.6 < est.share < 0.9  # 3 of 4 keys are footprint levels
    per_key = est.sample_bytes / est.sampled
    assert abs(est.estimate_bytes - per_key * 400 * est.share) < per_key


def test_families_cover_every_prefix() -> None:
    """Each store's families are in its own db, and no prefix belongs to two stores."""
    prefixes = [f.prefix for f in FAMILIES]
    assert len(prefixes) == len(set(prefixes))
    assert family_of("ingest:checkpoint:src:DOL", Store.QUOTES).must_expire is False  # type: ignore[union-attr]
    assert family_of("lastquote:DOL", Store.QUOTES).ttl == 86_400  # type: ignore[union-attr]
    assert family_of("quote:DOL:1", Store.ORDERFLOW) is None


def test_stats_samples_as_many_keys_as_asked(cli: Any, server: Any) -> None:
    with redis.Redis(port=server.port, db=1) as r:
        pipe = r.pipeline(transaction=False)
        for i in range(3000):  # bounded; more than one SCAN page
            pipe.set(f"orderflow:SMP:{1_700_000_000 + i}", '{"symbol":"SMP","trades":[]}', ex=300)
        pipe.execute()
    rows = json.loads(_ok(cli.smarttrade("stats", "--sample", "50", "--json")).stdout)
    (flow,) = [row for row in rows if row["store"] == "orderflow"]
    assert flow["sampled"] == 50 and sum(flow["ttl_sample"].values()) == 50, flow
