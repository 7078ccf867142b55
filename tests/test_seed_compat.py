"""The runbook's own redis-cli lines against a real server, read back through our stores, and our
writes read back with redis-cli GET in the contract's shape."""

from __future__ import annotations

import json
import time

import pytest

from smarttrade.errors import DecodeError
from smarttrade.models import Quote, Trade
from smarttrade.stores import Stores

SEED_TRADES = (
    '{"trades":[{"price":5.234,"volume":100,"side":"buy","time":1625097600},'
    '{"price":5.233,"volume":200,"side":"sell","time":1625097601}]}'
)


async def test_seed_quote_line(cli, stores: Stores) -> None:
    ts = int(time.time())
    cli.redis("-n", "0", "SETEX", f"quote:DOL:{ts}", "60", '{"price":5.234,"volume":1000}')
    quote = await stores.quotes.get("DOL", ts)
    # symbol and timestamp are missing in the seed's value: they come from the key
    assert quote == Quote(symbol="DOL", price=5.234, volume=1000, timestamp=ts, bid=None, ask=None)
    assert [q.price for q in await stores.quotes.history("DOL", until=ts)] == [5.234]


async def test_seed_orderflow_line(cli, stores: Stores) -> None:
    ts = int(time.time())
    cli.redis("-n", "1", "SETEX", f"orderflow:DOL:{ts}", "300", SEED_TRADES)
    bucket = await stores.orderflow.second("DOL", ts)
    assert bucket is not None and bucket.symbol == "DOL"
    assert bucket.trades == [
        Trade(price=5.234, volume=100, side="buy", time=1625097600),
        Trade(price=5.233, volume=200, side="sell", time=1625097601),
    ]
    # appending to a hand-written bucket keeps its trades and adds ours, in the contract shape
    await stores.orderflow.append("DOL", [Trade(price=5.235, volume=7, side="buy", time=ts + 0.5)])
    stored = json.loads(cli.redis("-n", "1", "GET", f"orderflow:DOL:{ts}"))
    assert stored["symbol"] == "DOL"
    assert [t["volume"] for t in stored["trades"]] == [100, 200, 7]
    assert set(stored["trades"][2]) == {"price", "volume", "side", "time"}


async def test_seed_footprint_line(cli, stores: Stores) -> None:
    cli.redis("-n", "2", "SETEX", "footprint:DOL:5234", "600", '{"buy_volume":1500,"sell_volume":800}')
    level = await stores.footprint.level("DOL", 5234)
    assert level is not None
    # documented defaults: price from the level and DOL's scale, total = buy + sell,
    # imbalance = buy / total
    assert level.price == 5.234
    assert (level.buy_volume, level.sell_volume, level.total_volume) == (1500, 800, 2300)
    assert level.imbalance == round(1500 / 2300, 6)
    # a delta on top of the hand-written level adds to it
    await stores.footprint.apply("DOL", {5234: (10, 5)})
    stored = json.loads(cli.redis("-n", "2", "GET", "footprint:DOL:5234"))
    assert stored == {
        "price": 5.234,
        "buy_volume": 1510,
        "sell_volume": 805,
        "total_volume": 2315,
        "imbalance": round(1510 / 2315, 6),
    }


async def test_seed_calc_line(cli, stores: Stores) -> None:
    cli.redis("-n", "3", "SETEX", "calc:DOL:rsi", "1800", '{"value":65.4,"period":14}')
    calc = await stores.calc.get("DOL", "rsi")
    assert calc is not None
    assert (calc.indicator, calc.value, calc.period, calc.timestamp) == ("rsi", 65.4, 14, None)
    assert set(await stores.calc.all("DOL")) == {"rsi"}


async def test_seed_session_line(cli, stores: Stores) -> None:
    cli.redis("-n", "4", "SETEX", "session:user123", "3600", '{"socket_id":"abc123","subscriptions":["DOL"]}')
    session = await stores.sessions.get("user123")
    assert session is not None
    assert (session.user_id, session.socket_id, session.subscriptions) == ("user123", "abc123", ["DOL"])
    assert session.connected_at is None  # unknown: the seed's value has none
    await stores.sessions.subscribe("user123", ["WIN"])
    stored = json.loads(cli.redis("-n", "4", "GET", "session:user123"))
    assert stored["subscriptions"] == ["DOL", "WIN"]
    assert stored["user_id"] == "user123"


async def test_seed_config_line(cli, stores: Stores) -> None:
    # the shell strips the quotes: Redis holds the bare word dark, which is not JSON
    cli.redis("-n", "5", "SET", "config:user123:theme", "dark")
    assert cli.redis("-n", "5", "GET", "config:user123:theme") == "dark"
    assert await stores.configs.get("user123", "theme") == "dark"
    assert await stores.configs.all("user123") == {"theme": "dark"}


async def test_missing_required_field_is_a_clear_error(cli, stores: Stores) -> None:
    ts = int(time.time())
    cli.redis("-n", "0", "SETEX", f"quote:DOL:{ts}", "60", '{"volume":1000}')
    with pytest.raises(DecodeError, match=rf"quote:DOL:{ts}: Object missing required field price"):
        await stores.quotes.get("DOL", ts)
    cli.redis("-n", "1", "SETEX", f"orderflow:DOL:{ts}", "300", '{"trades":[...]}')
    with pytest.raises(DecodeError, match="malformed"):
        await stores.orderflow.second("DOL", ts)


async def test_our_writes_read_back_with_redis_cli(cli, stores: Stores) -> None:
    ts = 1_700_000_000
    await stores.quotes.put(
        Quote(symbol="DOL", price=5234.5, volume=1000, timestamp=ts, bid=5234.0, ask=5235.0)
    )
    assert json.loads(cli.redis("-n", "0", "GET", f"quote:DOL:{ts}")) == {
        "symbol": "DOL",
        "price": 5234.5,
        "volume": 1000,
        "timestamp": ts,
        "bid": 5234.0,
        "ask": 5235.0,
    }
    await stores.orderflow.append(
        "DOL",
        [
            Trade(price=5234.5, volume=100, side="buy", time=ts),
            Trade(price=5234.0, volume=200, side="sell", time=ts + 0.25),
        ],
    )
    assert json.loads(cli.redis("-n", "1", "GET", f"orderflow:DOL:{ts}")) == {
        "symbol": "DOL",
        "trades": [
            {"price": 5234.5, "volume": 100, "side": "buy", "time": ts},
            {"price": 5234.0, "volume": 200, "side": "sell", "time": ts + 0.25},
        ],
    }
    await stores.footprint.apply("DOL", {5234500: (1500, 800)})
    assert json.loads(cli.redis("-n", "2", "GET", "footprint:DOL:5234500")) == {
        "price": 5234.5,
        "buy_volume": 1500,
        "sell_volume": 800,
        "total_volume": 2300,
        "imbalance": 0.652174,
    }
    await stores.calc.put("DOL", "rsi", 65.4, period=14, timestamp=ts)
    assert json.loads(cli.redis("-n", "3", "GET", "calc:DOL:rsi")) == {
        "indicator": "rsi",
        "value": 65.4,
        "timestamp": ts,
        "period": 14,
    }
    session = await stores.sessions.open("user123", "abc123", ["DOL", "WIN"])
    assert json.loads(cli.redis("-n", "4", "GET", "session:user123")) == {
        "user_id": "user123",
        "socket_id": "abc123",
        "connected_at": session.connected_at,
        "subscriptions": ["DOL", "WIN"],
    }
    await stores.configs.set("user123", "theme", "dark")
    await stores.configs.set("user123", "symbols", ["DOL", "WIN", "WDO"])
    await stores.configs.set("user123", "alerts", {"DOL": {"price": 5.25, "type": "above"}})
    assert cli.redis("-n", "5", "GET", "config:user123:theme") == '"dark"'
    assert json.loads(cli.redis("-n", "5", "GET", "config:user123:symbols")) == ["DOL", "WIN", "WDO"]
    assert json.loads(cli.redis("-n", "5", "GET", "config:user123:alerts")) == {
        "DOL": {"price": 5.25, "type": "above"}
    }
