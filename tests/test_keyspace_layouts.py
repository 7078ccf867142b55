"""The two key layouts (docs/keyspace.md): standalone is the contract byte for byte; cluster puts
the symbol or user in a hash tag so that every key of one commit hashes to one slot. The slot rules
are checked against a real cluster-enabled redis-server, then an ingest with analytics runs on a
one-node cluster (database 0 only, CROSSSLOT checks on) and every commit's keys share a slot."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot

from smarttrade import keyspace as ks
from smarttrade.errors import ValidationError
from smarttrade.feeds.synthetic import SyntheticFeed
from smarttrade.ingest import engine as engine_module
from smarttrade.ingest.run import ChunkFeed, run_feed
from smarttrade.keyspace import CLUSTER, STANDALONE, Store, layout_for, parse_key, use_layout
from smarttrade.ops.sample import script_calls
from smarttrade.ops.server import Admin
from smarttrade.redis.topology import Topology
from tests.conftest import settings_for, start_server


@pytest.fixture
def cluster_layout() -> Iterator[None]:
    previous = use_layout(CLUSTER)
    yield
    use_layout(previous)


def spelled() -> list[str]:
    return [
        ks.quote_key("DOL", 1700000000),
        ks.last_quote_key("DOL"),
        ks.orderflow_key("DOL", 1700000000),
        ks.footprint_key("DOL", 5234),
        ks.calc_key("DOL", "rsi"),
        ks.checkpoint_key("b3", "DOL"),
        ks.trades_stream_key("DOL"),
        ks.stream_epoch_key("DOL"),
        ks.trades_channel("DOL"),
        ks.bar_key("DOL", "1m", 60),
        ks.bar_index_key("DOL", "1m"),
        ks.bar_footprint_key("DOL", "1m", 60),
        ks.session_key("user123"),
        ks.config_key("user123", "theme"),
        ks.script_calls_key("DOL"),
    ]


def test_standalone_is_the_contract_and_cluster_tags_symbol_or_user(cluster_layout) -> None:
    assert spelled() == [
        "quote:{DOL}:1700000000",
        "lastquote:{DOL}",
        "orderflow:{DOL}:1700000000",
        "footprint:{DOL}:5234",
        "calc:{DOL}:rsi",
        "ingest:checkpoint:b3:{DOL}",
        "stream:trades:{DOL}",
        "stream:epoch:{DOL}",
        "trades:{DOL}",
        "bar:{DOL}:1m:60",
        "bars:{DOL}:1m",
        "fpbar:{DOL}:1m:60",
        "session:{user123}",
        "config:{user123}:theme",
        "ops:scriptcalls:{DOL}",
    ]
    patterns = [p for _, p in ks.symbol_patterns("DOL")]
    assert patterns[:3] == ["quote:{DOL}:*", "lastquote:{DOL}", "ingest:checkpoint:*:{DOL}"]
    assert ks.owner_prefix(Store.CALC, "DOL") == "calc:{DOL}:"
    assert ks.owner_prefix(Store.CONFIG, "user123") == "config:{user123}:"
    use_layout(STANDALONE)
    assert spelled() == [
        "quote:DOL:1700000000",
        "lastquote:DOL",
        "orderflow:DOL:1700000000",
        "footprint:DOL:5234",
        "calc:DOL:rsi",
        "ingest:checkpoint:b3:DOL",
        "stream:trades:DOL",
        "stream:epoch:DOL",
        "trades:DOL",
        "bar:DOL:1m:60",
        "bars:DOL:1m",
        "fpbar:DOL:1m:60",
        "session:user123",
        "config:user123:theme",
        "ops:scriptcalls",
    ]
    assert ks.owner_prefix(Store.FOOTPRINT, "DOL") == "footprint:DOL:"


def test_parse_key_and_families_understand_both_layouts() -> None:
    assert parse_key("quote:DOL:17").parts == ("DOL", "17")
    assert parse_key("quote:{DOL}:17", CLUSTER).parts == ("DOL", "17")
    assert parse_key("config:{user123}:theme", CLUSTER).parts == ("user123", "theme")
    assert parse_key("session:{user123}", CLUSTER).parts == ("user123",)
    with pytest.raises(ValueError, match=r"'DOL' is not a hash tag"):
        parse_key("quote:DOL:17", CLUSTER)
    with pytest.raises(ValidationError, match="is not a symbol"):
        parse_key("quote:{DOL}:17")  # a cluster key is no standalone key
    with pytest.raises(ValueError, match=r"does not match footprint:\{SYMBOL\}:LEVEL"):
        parse_key("footprint:{DOL}", CLUSTER)
    for key in ("quote:{DOL}:1", "lastquote:{DOL}", "ingest:checkpoint:b3:{DOL}"):
        assert ks.family_of(key, Store.QUOTES) is not None, key
    assert layout_for("cluster") is CLUSTER and layout_for("standalone") is STANDALONE
    with pytest.raises(ValueError, match="REDIS_MODE: 'mesh' is not one of"):
        layout_for("mesh")


@pytest.fixture
def node(tmp_path: Path, binary: str) -> Iterator[redis.Redis]:
    """A one-node Redis Cluster of our own: every slot on it, database 0 only."""
    server = start_server(
        tmp_path / "cluster",
        binary,
        **{"cluster-enabled": "yes", "cluster-config-file": str(tmp_path / "nodes.conf")},
    )
    client = redis.Redis(port=server.port)
    try:
        client.execute_command("CLUSTER", "ADDSLOTS", *range(16384))  # 6.2 has no ADDSLOTSRANGE
        deadline = time.monotonic() + 30
        while b"cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
            assert time.monotonic() < deadline, "the one-node cluster did not come up"
            time.sleep(0.1)
        client.url = server.url  # type: ignore[attr-defined]
        yield client
    finally:
        client.close()
        server.stop(save=False)


def test_key_slot_follows_the_servers_hash_tag_rules(node: redis.Redis) -> None:
    """redis-py's key_slot (used below) agrees with the server, hash tag edge cases included."""
    keys = [
        *spelled(),
        "quote:{DOL}:1",
        "footprint:{DOL}:9",
        "{}x",
        "a{}{DOL}",
        "a{DOL}{WDO}",
        "a{DOL",
        "a}DOL{",
        "{{DOL}}",
        "session:{user@x.com}",
    ]
    for key in keys:
        assert key_slot(key.encode()) == node.execute_command("CLUSTER", "KEYSLOT", key), key
    assert key_slot(b"quote:{DOL}:1") == key_slot(b"fpbar:{DOL}:1m:60") != key_slot(b"quote:{WDO}:1")


async def test_each_commit_hashes_to_one_slot_on_a_one_node_cluster(
    node: redis.Redis, cluster_layout, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, set[int]]] = []
    build = engine_module.build_commit

    def observed(*args, **kwargs):  # type: ignore[no-untyped-def]
        c = build(*args, **kwargs)
        seen.append((c.symbol, {key_slot(k.encode()) for k in c.keys}))
        return c

    monkeypatch.setattr(engine_module, "build_commit", observed)
    url = node.url  # type: ignore[attr-defined]
    one_db = {f"redis_db_{s.value}": 0 for s in Store}
    settings = settings_for(url, **one_db)
    pools = Topology.standalone(url, settings, 8)
    feed = SyntheticFeed(["DOL", "WDO"], seed=3, count=3000, start_day=date(2025, 11, 24), chunk=500)
    try:
        result = await run_feed(pools, settings, ChunkFeed(feed.chunks, feed.name, total=3000), None)
        # ops/s leaves out what the commits ran: in this layout, the sum of one counter per symbol
        per_symbol = [int(node.hget(ks.script_calls_key(s), "calls") or 0) for s in ("DOL", "WDO")]
        counted = await script_calls(Admin(pools.admin, settings, url))
    finally:
        await pools.aclose()
    assert min(per_symbol) > 0 and counted == sum(per_symbol)
    assert result.stats.trades > 2000 and result.stats.commits >= 2
    assert seen and all(len(slots) == 1 for _, slots in seen), seen
    assert {s for s, _ in seen} == {"DOL", "WDO"}
    assert node.get(ks.last_quote_key("DOL")) is not None
    assert node.exists("bars:{DOL}:1m") and node.exists(ks.script_calls_key("DOL"))
    assert list(node.scan_iter("ingest:checkpoint:*:{DOL}", count=100))
