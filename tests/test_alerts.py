"""The alert index and its check against a real server: crossing semantics, exactly once, the
config store writing config and index together, rebuild, and rule validation fuzzed."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from smarttrade.errors import NotFound, ValidationError
from smarttrade.keyspace import ALERT_CHANNEL, alert_index_key
from smarttrade.models import AlertRule, Trade
from smarttrade.stores import Stores
from smarttrade.stores.alerts import AlertStore
from smarttrade.stores.configs import validate_setting


class Clock:
    """Stream-entry offsets after the server's now, one per call, as commits would have."""

    def __init__(self, server) -> None:
        sec, usec = redis.Redis(port=server.port).time()
        self.ms = sec * 1000 + usec // 1000 + 1000

    def next(self) -> str:
        self.ms += 1
        return f"{self.ms}-0"


def trades(*prices: float) -> list[Trade]:
    return [Trade(price=p, volume=1, side="buy", time=1_764_000_000 + i) for i, p in enumerate(prices)]


@pytest.fixture
def alerts(stores: Stores) -> AlertStore:
    return stores.configs.alerts


async def test_above_and_below_fire_once_at_or_beyond(server, stores: Stores, alerts: AlertStore) -> None:
    await stores.configs.set("ann", "alerts", {"DOL": {"price": 5.25, "type": "above"}})
    await stores.configs.set("bob", "alerts", {"DOL": {"price": 5.0, "type": "below"}})
    clock = Clock(server)
    assert await alerts.check("DOL", clock.next(), "e1", trades(5.1, 5.2)) == []
    assert await alerts.check("DOL", clock.next(), "e1", trades(5.2, 5.25, 5.3)) == ["ann"]
    assert await alerts.check("DOL", clock.next(), "e1", trades(5.4, 4.5)) == ["bob"]
    assert await alerts.check("DOL", clock.next(), "e1", trades(5.5, 4.0)) == []  # once: disarmed
    [fired] = await alerts.fired("ann")
    assert fired["price"] == 5.25 and fired["trade_price"] == 5.25 and fired["type"] == "above"
    assert fired["fired_at"] == 1_764_000_001 and fired["symbol"] == "DOL" and fired["epoch"] == "e1"
    states = {s.symbol: s.state for s in await alerts.states("ann")}
    assert states == {"DOL": "fired"}
    await alerts.rearm("ann", "DOL")
    assert await alerts.check("DOL", clock.next(), "e1", trades(5.6)) == ["ann"]
    with pytest.raises(NotFound):
        await alerts.rearm("ann", "WIN")


async def test_created_already_above_fires_on_the_next_trade(server, stores: Stores, alerts) -> None:
    """Arming is by the server's clock: a commit before it does not fire, the next one does."""
    sec, usec = redis.Redis(port=server.port).time()
    before = f"{sec * 1000 + usec // 1000 - 5000}-0"
    await stores.configs.set("ann", "alerts", {"WIN": {"price": 100, "type": "above"}})
    assert await alerts.check("WIN", before, "e", trades(200)) is None  # before the arming: refused
    clock = Clock(server)
    assert await alerts.check("WIN", clock.next(), "e", trades(200)) == ["ann"]


async def test_every_rearms_one_tick_back(server, stores: Stores, alerts: AlertStore) -> None:
    # WIN's tick is 5: an above-125000 alert re-arms at a trade <= 124995
    await stores.configs.set("ann", "alerts", {"WIN": {"price": 125000, "type": "above", "trigger": "every"}})
    clock = Clock(server)
    assert await alerts.check("WIN", clock.next(), "", trades(125000)) == ["ann"]
    assert await alerts.check("WIN", clock.next(), "", trades(124999, 125010)) == []  # not a tick back
    assert [s.state for s in await alerts.states("ann")] == ["waiting"]
    # one commit: back a tick (re-arm), then up again (fires within the same commit)
    assert await alerts.check("WIN", clock.next(), "", trades(124995, 125001)) == ["ann"]
    assert len(await alerts.fired("ann")) == 2
    # fired, back a tick and up again, all in one commit: two fires
    assert await alerts.check("WIN", clock.next(), "", trades(124990, 125000, 124995, 125000)) == [
        "ann",
        "ann",
    ]


async def test_expired_never_fires(server, stores: Stores, alerts: AlertStore) -> None:
    await stores.configs.set("ann", "alerts", {"DOL": {"price": 5.0, "type": "above", "expires_at": 1000}})
    clock = Clock(server)
    assert await alerts.check("DOL", clock.next(), "", trades(6.0)) == []
    assert [s.state for s in await alerts.states("ann")] == ["expired"]
    assert await alerts.fired("ann") == []


async def test_same_offset_twice_fires_once_and_publishes(server, stores: Stores, alerts: AlertStore) -> None:
    """Two gateways checking the same message: the second gets nothing; the fire is published."""
    await stores.configs.set("ann", "alerts", {"DOL": {"price": 5.0, "type": "above"}})
    sub = redis.Redis(port=server.port).pubsub()
    sub.subscribe(ALERT_CHANNEL)
    sub.get_message(timeout=1)
    other = Stores(stores.topology, stores.configs.settings).configs.alerts
    offset = Clock(server).next()
    assert await alerts.check("DOL", offset, "e9", trades(5.5)) == ["ann"]
    assert await other.check("DOL", offset, "e9", trades(5.5)) is None
    message = sub.get_message(timeout=2)
    frame = json.loads(message["data"])
    assert frame["type"] == "alert" and frame["user"] == "ann" and frame["offset"] == offset
    assert frame["epoch"] == "e9" and frame["alert"]["trade_price"] == 5.5
    assert sub.get_message(timeout=0.2) is None
    sub.close()


async def test_config_and_index_move_together(server, stores: Stores, alerts: AlertStore) -> None:
    r = redis.Redis(port=server.port, db=5)
    await stores.configs.set(
        "ann", "alerts", {"DOL": {"price": 5.0, "type": "above"}, "WIN": {"price": 9, "type": "below"}}
    )
    assert json.loads(r.get("config:ann:alerts")) == {
        "DOL": {"price": 5.0, "type": "above"},
        "WIN": {"price": 9.0, "type": "below"},
    }
    assert r.zscore(alert_index_key("DOL", "above"), "ann") == 5.0
    assert await alerts.symbols() == {"DOL", "WIN"}
    await stores.configs.set("ann", "alerts", {"WIN": {"price": 9, "type": "above"}})
    assert r.zscore(alert_index_key("DOL", "above"), "ann") is None
    assert r.zscore(alert_index_key("WIN", "below"), "ann") is None
    assert r.zscore(alert_index_key("WIN", "above"), "ann") == 9.0
    assert await alerts.symbols() == {"WIN"}
    assert await stores.configs.remove("ann", "alerts") is True
    assert r.get("config:ann:alerts") is None and await alerts.symbols() == set()


async def test_rebuild_from_config_keys(server, stores: Stores, alerts: AlertStore) -> None:
    r = redis.Redis(port=server.port, db=5)
    await stores.configs.set("ann", "alerts", {"DOL": {"price": 5.0, "type": "above"}})
    clock = Clock(server)
    assert await alerts.check("DOL", clock.next(), "", trades(6.0)) == ["ann"]
    # a hand-written config and a lost index entry
    r.set("config:bob:alerts", json.dumps({"WIN": {"price": 10, "type": "below"}}))
    r.hset(alert_index_key("WIN", "meta"), "ghost", json.dumps({"pt": "1.0", "t": "above"}))
    r.sadd("alertidx:symbols", "WIN")
    assert await alerts.rebuild() == 2  # bob armed, ghost removed; ann unchanged (still fired)
    assert r.zscore(alert_index_key("WIN", "below"), "bob") == 10.0
    assert r.hget(alert_index_key("WIN", "meta"), "ghost") is None
    assert [s.state for s in await alerts.states("ann")] == ["fired"]
    assert await alerts.rebuild() == 0


def test_old_shape_is_written_as_before() -> None:
    assert (
        validate_setting("alerts", {"DOL": {"price": 5.25, "type": "above"}})
        == b'{"DOL":{"price":5.25,"type":"above"}}'
    )
    data = validate_setting(
        "alerts", {"DOL": {"price": 5.25, "type": "above", "trigger": "every", "expires_at": 9}}
    )
    assert json.loads(data)["DOL"] == {"price": 5.25, "type": "above", "trigger": "every", "expires_at": 9}
    with pytest.raises(ValidationError, match=r"alerts\.ZZZ\.trigger"):
        validate_setting("alerts", {"ZZZ": {"price": 1, "type": "above", "trigger": "every"}})


_rule_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=True),
    st.text(max_size=6),
    st.sampled_from(["above", "below", "once", "every", "sideways"]),
)
_likely = st.fixed_dictionaries(
    {
        "price": st.one_of(st.floats(0.5, 2e5), st.integers(-1, 200_000)),
        "type": st.sampled_from(["above", "below"]),
    },
    optional={
        "trigger": st.sampled_from(["once", "every", "twice"]),
        "expires_at": st.one_of(st.integers(-1, 2_000_000_000), st.text(max_size=3)),
    },
)
_rules = st.one_of(
    _likely,
    st.dictionaries(
        st.sampled_from(["price", "type", "trigger", "expires_at", "colour"]), _rule_values, max_size=5
    ),
)


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(symbol=st.sampled_from(["DOL", "WIN", "bad sym", ""]), rule=_rules)
def test_fuzzed_rules_are_valid_or_named(symbol: str, rule: dict) -> None:
    """Whatever is offered: either a rule the model accepts, or a ValidationError naming the
    setting, symbol and field (nothing is written on error: ConfigStore.set validates first)."""
    try:
        data = validate_setting("alerts", {symbol: rule})
    except ValidationError as exc:
        assert exc.where.startswith("alerts"), exc
        assert exc.reason
        return
    parsed = json.loads(data)[symbol]
    AlertRule(**parsed)  # round-trips through the model
    assert set(parsed) <= {"price", "type", "trigger", "expires_at"}


async def test_invalid_write_leaves_nothing(server, stores: Stores, alerts: AlertStore) -> None:
    r = redis.Redis(port=server.port, db=5)
    with pytest.raises(ValidationError, match=r"alerts\.DOL.*price"):
        await stores.configs.set("ann", "alerts", {"DOL": {"price": -1, "type": "above"}})
    assert r.dbsize() == 0


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(symbol=st.sampled_from(["DOL", "WIN", "ZZZ", "bad sym"]), rule=_rules)
def test_fuzzed_writes_leave_nothing_on_error(server, symbol: str, rule: dict) -> None:
    """Through the config store into a real server: a refused rule writes no key at all (config
    or index); an accepted one writes the config key and indexes it."""
    from smarttrade.redis.topology import Topology
    from tests.conftest import settings_for

    async def attempt() -> ValidationError | None:
        settings = settings_for(server.url)
        pools = Topology.standalone(server.url, settings, 4)
        try:
            await Stores(pools, settings).configs.set("fuzz", "alerts", {symbol: rule})
        except ValidationError as exc:
            return exc
        finally:
            await pools.aclose()
        return None

    with redis.Redis(port=server.port, db=5) as r:
        r.flushdb()  # our own test server
        error = asyncio.run(attempt())
        if error is not None:
            assert error.where.startswith("alerts") and error.reason, error
            assert r.dbsize() == 0, list(r.scan_iter())
        else:
            assert r.exists("config:fuzz:alerts") and r.hexists(alert_index_key(symbol, "meta"), "fuzz")
