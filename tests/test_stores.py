"""Each store's operations and TTLs against a real server."""

from __future__ import annotations

import threading

import pytest
import redis

from smarttrade.errors import DecodeError, ValidationError
from smarttrade.keyspace import SPECS, Store
from smarttrade.models import Quote, Trade
from smarttrade.stores import Stores

TS = 1_700_000_000


def ttl(server, db: int, key: str) -> int:
    with redis.Redis(port=server.port, db=db) as r:
        return r.ttl(key)


async def test_quotes_latest_and_history(stores: Stores) -> None:
    for i, price in enumerate([5234.0, 5234.5, 5235.0]):
        await stores.quotes.put(Quote(symbol="DOL", price=price, volume=1, timestamp=TS + i))
    # an older quote arriving late does not move the latest back
    await stores.quotes.put(Quote(symbol="DOL", price=5000.0, volume=1, timestamp=TS - 5))
    latest = await stores.quotes.latest("DOL")
    assert latest is not None and latest.price == 5235.0 and latest.timestamp == TS + 2
    history = await stores.quotes.history("DOL")
    assert [q.timestamp for q in history] == [TS - 5, TS, TS + 1, TS + 2]
    assert await stores.quotes.latest("WIN") is None
    assert await stores.quotes.get("DOL", TS + 99) is None


async def test_quote_requires_symbol_and_timestamp(stores: Stores) -> None:
    with pytest.raises(ValidationError, match="symbol and timestamp"):
        await stores.quotes.put(Quote(price=1.0))
    with pytest.raises(DecodeError, match=r"quote: Expected float > 0.0 - at \$.price"):
        await stores.quotes.put(Quote(symbol="DOL", price=-1.0, timestamp=TS))


async def test_orderflow_append_and_range(stores: Stores) -> None:
    await stores.orderflow.append(
        "WIN",
        [
            Trade(price=125000, volume=1, side="buy", time=TS + 0.1),
            Trade(price=125005, volume=2, side="sell", time=TS + 0.9),
            Trade(price=125010, volume=3, side="buy", time=TS + 2.5),
        ],
    )
    await stores.orderflow.append("WIN", [Trade(price=125000, volume=4, side="sell", time=TS + 0.95)])
    one = await stores.orderflow.second("WIN", TS)
    assert one is not None and [t.volume for t in one.trades] == [1, 2, 4]
    rng = await stores.orderflow.range("WIN", TS, TS + 10)
    assert [(s, len(b.trades)) for s, b in rng] == [(TS, 3), (TS + 2, 1)]
    with pytest.raises(ValidationError, match="end"):
        await stores.orderflow.range("WIN", TS, TS - 1)


async def test_footprint_apply_ladder_and_removal(stores: Stores) -> None:
    await stores.footprint.add_trades(
        "WDO",
        [
            Trade(price=5234.5, volume=10, side="buy", time=TS),
            Trade(price=5234.5, volume=4, side="sell", time=TS),
            Trade(price=5235.0, volume=3, side="sell", time=TS),
        ],
    )
    ladder = await stores.footprint.ladder("WDO")
    assert [(lv, fp.buy_volume, fp.sell_volume) for lv, fp in ladder] == [
        (5235000, 0, 3),
        (5234500, 10, 4),
    ]
    at = await stores.footprint.at_price("WDO", 5234.5)
    assert at is not None and at.total_volume == 14 and at.imbalance == round(10 / 14, 6)
    # reversing every trade (a B3 cancel) leaves no key behind
    await stores.footprint.apply("WDO", {5234500: (-10, -4), 5235000: (0, -3)})
    assert await stores.footprint.ladder("WDO") == []


async def test_footprint_refuses_to_touch_a_corrupt_level(cli, stores: Stores) -> None:
    cli.redis("-n", "2", "SET", "footprint:DOL:5235000", "garbage", "EX", "600")
    with pytest.raises(
        DecodeError, match="footprint write: footprint:DOL:5235000 holds a value that is not a JSON"
    ):
        await stores.footprint.apply("DOL", {5234500: (1, 0), 5235000: (1, 0)})
    # all-or-nothing: the sound level was not written either
    assert await stores.footprint.level("DOL", 5234500) is None
    assert cli.redis("-n", "2", "GET", "footprint:DOL:5235000") == "garbage"


async def test_footprint_fractional_quantities_stay_exact(stores: Stores, monkeypatch) -> None:
    from dataclasses import replace

    from smarttrade import symbols

    monkeypatch.setitem(symbols.SPECS, "BTC", replace(symbols.SPECS["WIN"], root="BTC", qty_decimals=8))
    for _ in range(10):
        await stores.footprint.apply("BTC", {100: (0.1, 0.00000001)})
    level = await stores.footprint.level("BTC", 100)
    assert level is not None
    assert (level.buy_volume, level.sell_volume) == (1, 0.0000001)  # not 0.9999999999999999


async def test_calc_put_get_all(stores: Stores) -> None:
    await stores.calc.put("DOL", "rsi", 65.4, period=14, timestamp=TS)
    await stores.calc.put("DOL", "ema_21", 5234.25, period=21, timestamp=TS)
    await stores.calc.put("WIN", "rsi", 40.0, period=14, timestamp=TS)
    got = await stores.calc.get("DOL", "rsi")
    assert got is not None and (got.value, got.period, got.timestamp) == (65.4, 14, TS)
    assert sorted(await stores.calc.all("DOL")) == ["ema_21", "rsi"]
    with pytest.raises(ValidationError, match="indicator"):
        await stores.calc.put("DOL", "RSI!", 1.0)


async def test_sessions_lifecycle(server, stores: Stores) -> None:
    ttl_s = SPECS[Store.SESSIONS].default_ttl
    await stores.sessions.open("alice", "sock1", ["DOL"])
    with redis.Redis(port=server.port, db=4) as r:
        r.expire("session:alice", 10)
    assert await stores.sessions.touch("alice")
    assert abs(ttl(server, 4, "session:alice") - ttl_s) <= 1
    s = await stores.sessions.subscribe("alice", ["WIN", "DOL", "WDO"])
    assert s is not None and s.subscriptions == ["DOL", "WIN", "WDO"]
    s = await stores.sessions.unsubscribe("alice", ["DOL"])
    assert s is not None and s.subscriptions == ["WIN", "WDO"]
    assert await stores.sessions.close("alice")
    assert await stores.sessions.get("alice") is None
    assert not await stores.sessions.touch("alice")
    assert await stores.sessions.subscribe("alice", ["DOL"]) is None


async def test_configs_crud(stores: Stores) -> None:
    await stores.configs.set("bob", "theme", "light")
    await stores.configs.set("bob", "layout", {"panels": ["tape", "ladder"], "zoom": 1.5})
    assert await stores.configs.all("bob") == {
        "layout": {"panels": ["tape", "ladder"], "zoom": 1.5},
        "theme": "light",
    }
    assert await stores.configs.remove("bob", "theme")
    assert await stores.configs.get("bob", "theme") is None
    assert not await stores.configs.remove("bob", "theme")
    # one user's listing never includes another whose id it prefixes
    await stores.configs.set("bo", "theme", "dark")
    assert await stores.configs.all("bo") == {"theme": "dark"}
    assert "theme" not in await stores.configs.all("bob")
    with pytest.raises(ValidationError, match="user_id"):
        await stores.configs.set("b*", "theme", "dark")


async def test_every_store_key_carries_its_ttl(server, stores: Stores) -> None:
    await stores.quotes.put(Quote(symbol="DOL", price=5234.5, volume=1, timestamp=TS))
    await stores.orderflow.append("DOL", [Trade(price=5234.5, volume=1, side="buy", time=TS)])
    await stores.footprint.apply("DOL", {5234500: (1, 0)})
    await stores.calc.put("DOL", "rsi", 50.0, period=14)
    await stores.sessions.open("u1", "s1")
    await stores.configs.set("u1", "theme", "dark")
    expected = {
        (0, f"quote:DOL:{TS}"): 60,
        (1, f"orderflow:DOL:{TS}"): 300,
        (2, "footprint:DOL:5234500"): 600,
        (3, "calc:DOL:rsi"): 1800,
        (4, "session:u1"): 3600,
    }
    for (db, key), want in expected.items():
        assert want - 1 <= ttl(server, db, key) <= want, key
    assert ttl(server, 5, "config:u1:theme") == -1  # permanent
    assert 86_399 <= ttl(server, 0, "lastquote:DOL") <= 86_400


async def test_ttls_follow_settings(server, pools) -> None:
    from tests.conftest import settings_for

    custom = Stores(pools, settings_for(server.url, redis_ttl_quotes=5, redis_ttl_footprint=7))
    await custom.quotes.put(Quote(symbol="WIN", price=125000.0, volume=1, timestamp=TS))
    await custom.footprint.apply("WIN", {125000: (1, 1)})
    assert 4 <= ttl(server, 0, f"quote:WIN:{TS}") <= 5
    assert 6 <= ttl(server, 2, "footprint:WIN:125000") <= 7


async def test_read_key_dispatch(stores: Stores) -> None:
    await stores.calc.put("DOL", "rsi", 50.0, period=14, timestamp=TS)
    kv = await stores.read_key("calc:DOL:rsi")
    assert kv.store is Store.CALC and kv.db == 3 and kv.value["value"] == 50.0
    for bad in ("nope:1", "quote:DOL", "quote:DOL:abc", "footprint:dol:1"):
        with pytest.raises((ValueError, ValidationError)):
            await stores.read_key(bad)


def _keep_server_busy(port: int, seconds: float) -> None:
    """A script that spins: other commands queue up behind it (a slow server, not a dead one)."""
    spin = """
    local t = redis.call('TIME')
    local start = t[1] * 1e6 + t[2]
    repeat t = redis.call('TIME') until t[1] * 1e6 + t[2] - start > tonumber(ARGV[1])
    return 1
    """
    with redis.Redis(port=port) as r:
        r.eval(spin, 0, int(seconds * 1e6))


async def test_a_timed_out_script_is_not_sent_twice(server, settings) -> None:
    """A slow reply is not retried: the server may have run the script, which must count once."""
    import asyncio

    from smarttrade.errors import RedisUnavailable
    from smarttrade.redis.topology import Topology

    pools = Topology.standalone(server.url, settings, 12, socket_timeout=0.3)
    slow = Stores(pools, settings)
    try:
        await slow.footprint.apply("DOL", {5234500: (1, 0)})
        busy = threading.Thread(target=_keep_server_busy, args=(server.port, 0.8))
        busy.start()
        await asyncio.sleep(0.1)
        with pytest.raises(RedisUnavailable, match="Timeout"):
            await slow.footprint.apply("DOL", {5234500: (10, 0)})
        busy.join()
        await asyncio.sleep(0.2)  # the queued script has run by now, once
        level = await slow.footprint.level("DOL", 5234500)
        assert level is not None and level.buy_volume == 11
    finally:
        await pools.aclose()


@pytest.mark.parametrize(
    ("deltas", "message"),
    [
        ({5234500: (float("inf"), 0)}, "not a finite number"),
        ({5234500: (float("nan"), 0)}, "not a finite number"),
        ({5234500: (1.5, 0)}, "whole contracts"),
        ({5234500: (1e16, 0)}, "too large"),
        ({5234500.0: (1, 0)}, "not a positive integer level"),
        ({-5: (1, 0)}, "not a positive integer level"),
    ],
)
async def test_footprint_rejects_bad_deltas(stores: Stores, deltas, message) -> None:
    with pytest.raises(ValidationError, match=message):
        await stores.footprint.apply("DOL", deltas)
    assert await stores.footprint.ladder("DOL") == []


async def test_trades_are_validated_before_any_write(stores: Stores) -> None:
    bad = [
        Trade(price=5234.5, volume=-4, side="sell", time=TS),
        Trade(price=5234.5, volume=1, side="hold", time=TS),  # type: ignore[arg-type]
        Trade(price=-5, volume=1, side="buy", time=TS),
        Trade(price=5234.5, volume=1.5, side="buy", time=TS),
    ]
    for trade in bad:
        with pytest.raises((DecodeError, ValidationError)):
            await stores.footprint.add_trades("DOL", [trade])
        with pytest.raises((DecodeError, ValidationError)):
            await stores.orderflow.append("DOL", [trade])
    assert await stores.footprint.ladder("DOL") == []
    assert await stores.orderflow.range("DOL", TS - 1, TS + 1) == []


@pytest.mark.parametrize(
    "stored",
    [
        '{"symbol":"DOL","trades":[{"a":1}],"x":[{"b":2}]}',  # another field after trades
        '{"symbol":"WIN","trades":[]}',  # another symbol's bucket
        '{"trades":{"price":1}}',  # trades is not a list
        '{"symbol":"DOL","trades":[garbage]}',
    ],
)
async def test_orderflow_refuses_to_extend_what_is_not_a_bucket(cli, stores: Stores, stored: str) -> None:
    cli.redis("-n", "1", "SET", f"orderflow:DOL:{TS}", stored, "EX", "300")
    with pytest.raises(DecodeError, match="not an order-flow bucket; not changed"):
        await stores.orderflow.append("DOL", [Trade(price=5234.5, volume=1, side="buy", time=TS)])
    assert cli.redis("-n", "1", "GET", f"orderflow:DOL:{TS}") == stored


async def test_orderflow_keeps_hand_written_trades_digit_for_digit(cli, stores: Stores) -> None:
    stored = '{ "trades" : [ {"price":5234.5,"volume":2,"side":"buy","time":1700000000.123456} ] }'
    cli.redis("-n", "1", "SET", f"orderflow:DOL:{TS}", stored, "EX", "300")
    await stores.orderflow.append("DOL", [Trade(price=5235.0, volume=1, side="sell", time=TS + 0.5)])
    assert cli.redis("-n", "1", "GET", f"orderflow:DOL:{TS}") == (
        '{"symbol":"DOL","trades":[{"price":5234.5,"volume":2,"side":"buy","time":1700000000.123456},'
        '{"price":5235.0,"volume":1,"side":"sell","time":1700000000.5}]}'
    )


async def test_odd_keys_do_not_break_listings(cli, stores: Stores) -> None:
    await stores.footprint.apply("DOL", {5234500: (1, 0)})
    cli.redis("-n", "2", "SET", "footprint:DOL:²", "x", "EX", "60")
    cli.redis("-n", "2", "SET", "footprint:DOL:--5", "x", "EX", "60")
    with redis.Redis(port=cli.server.port, db=2) as r:
        r.set(b"footprint:DOL:\xff", b"x", ex=60)
    assert [lv for lv, _ in await stores.footprint.ladder("DOL")] == [5234500]


async def test_wrong_type_is_a_clear_error(cli, stores: Stores) -> None:
    cli.redis("-n", "2", "HSET", "footprint:DOL:1000", "a", "1")
    with pytest.raises(DecodeError, match="footprint:DOL:1000: WRONGTYPE"):
        await stores.footprint.level("DOL", 1000)


async def test_quote_far_in_the_future_is_refused_and_history_skips_corrupt(cli, stores: Stores) -> None:
    import time

    with pytest.raises(ValidationError, match="more than a day ahead"):
        await stores.quotes.put(Quote(symbol="DOL", price=5234.5, timestamp=time.time() + 3 * 86_400))
    await stores.quotes.put(Quote(symbol="DOL", price=5234.5, volume=1, timestamp=TS))
    cli.redis("-n", "0", "SET", f"quote:DOL:{TS - 1}", "garbage", "EX", "60")
    assert [q.timestamp for q in await stores.quotes.history("DOL")] == [TS]
    assert stores.quotes.corrupt_reads == 1


async def test_get_reads_exactly_the_key_named(stores: Stores) -> None:
    for bad in ("quote:DOL:0203", "quote:DOL:20_3", "quote:DOL: 203", "footprint:DOL:+5"):
        with pytest.raises(ValueError, match="without leading zeros"):
            await stores.read_key(bad)
