"""The alert engine and /api/me/alerts against a real server and real ingests.

The engine's message source here is ``PubSubHub``: a small real pub/sub subscription of the
test's own (``trades:*`` and the engine's extra channels) with a recording ``send_to_user`` in
place of the sockets, so each test controls which messages an engine sees (two engines, a dropped
message). Through the real hub and /ws: tests/test_gateway_alerts_ws.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio as aioredis

from smarttrade.feeds.record import BUY, SELL, TradeRecord
from smarttrade.gateway.alerts import AlertEngine
from smarttrade.gateway.app import create_app
from smarttrade.gateway.auth import Tokens
from smarttrade.gateway.context import GatewayContext
from smarttrade.ingest.engine import Engine
from smarttrade.ingest.live import LiveIngest
from smarttrade.models import TradeMessage, decode
from smarttrade.stores import Stores
from smarttrade.symbols import spec_for


class PubSubHub:
    """The hub's three methods over a pub/sub connection of its own; frames are recorded."""

    def __init__(self, port: int) -> None:
        self.client = aioredis.Redis(port=port)
        self.pubsub = self.client.pubsub()
        self.listeners: list[Callable[[str, TradeMessage], Any]] = []
        self.channels: dict[str, Callable[[bytes], Any]] = {}
        self.sent: list[tuple[str, dict]] = []
        self.raw_trades: list[bytes] = []
        self.drop: Callable[[TradeMessage], bool] = lambda _: False  # a message lost on the way
        self._task: asyncio.Task[None] | None = None

    def add_trade_listener(self, fn: Callable[[str, TradeMessage], Any]) -> None:
        self.listeners.append(fn)

    def add_channel(self, channel: str, fn: Callable[[bytes], Any]) -> None:
        self.channels[channel] = fn

    def send_to_user(self, user_id: str, frame: bytes) -> None:
        self.sent.append((user_id, json.loads(frame)))

    async def start(self) -> None:
        await self.pubsub.psubscribe("trades:*")
        await self.pubsub.subscribe(*self.channels)
        for _ in range(1 + len(self.channels)):  # the confirmations
            await self.pubsub.get_message(timeout=2)
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            m = await self.pubsub.get_message(timeout=1)
            if m is None:
                continue
            channel = m["channel"].decode()
            if m["type"] == "pmessage":
                self.raw_trades.append(m["data"])
                msg = decode(TradeMessage, m["data"], channel)
                if self.drop(msg):
                    continue
                for fn in self.listeners:
                    fn(msg.symbol, msg)
            elif m["type"] == "message" and channel in self.channels:
                self.channels[channel](m["data"])

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.pubsub.aclose()
        await self.client.aclose()


async def gateway(server, pools, settings) -> tuple[AlertEngine, PubSubHub]:
    hub = PubSubHub(server.port)
    engine = AlertEngine(Stores(pools, settings).configs.alerts, hub)
    await engine.start()
    await hub.start()
    return engine, hub


async def stop(*parts: Any) -> None:
    for part in parts:
        await part.stop()


async def wait_until(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert condition()


def history(server, user: str) -> list[dict]:
    with redis.Redis(port=server.port, db=5) as r:
        return [json.loads(x) for x in r.lrange(f"alertfired:{user}", 0, -1)]


T0 = 1_763_985_600_000_000


async def live_trades(
    pools, settings, prices: list[int], source: str, t0: int = T0, pause: float = 0.01
) -> None:
    live = LiveIngest(Engine(pools, settings, source))
    await live.start()
    for i, p in enumerate(prices):
        assert await live.submit(
            TradeRecord("WIN", p, 1, BUY if i % 2 else SELL, t0 + i * 1000, f"{source}{i}")
        )
        await asyncio.sleep(pause)  # one commit per trade, mostly
    await live.close()


async def test_two_engines_fire_once_per_crossing(server, pools, settings, stores: Stores) -> None:
    await stores.configs.set("ann", "alerts", {"WIN": {"price": 125010, "type": "above"}})
    await stores.configs.set("bob", "alerts", {"WIN": {"price": 124990, "type": "below", "trigger": "every"}})
    (e1, h1), (e2, h2) = await gateway(server, pools, settings), await gateway(server, pools, settings)
    try:
        # ann fires at 125010; bob at 124990, re-arms at 124995 (a tick back), fires at 124985
        await live_trades(pools, settings, [125000, 125010, 125020, 124990, 124995, 124985], "two")
        await wait_until(lambda: len(h1.sent) == 3 and len(h2.sent) == 3)
        await e1.drain()
        await e2.drain()
        await asyncio.sleep(0.3)
    finally:
        await stop(e1, h1, e2, h2)
    assert e1.stats.fired + e2.stats.fired == 3
    assert e1.stats.checked + e2.stats.checked == e1.stats.checked + e1.stats.stale  # each offset once
    assert [f["trade_price"] for f in history(server, "bob")] == [124985.0, 124990.0]
    assert [f["trade_price"] for f in history(server, "ann")] == [125010.0]
    for hub in (h1, h2):
        assert sorted(u for u, _ in hub.sent) == ["ann", "bob", "bob"]
        for user, frame in hub.sent:
            assert frame["type"] == "alert" and frame["symbol"] == "WIN" and frame["user"] == user
            assert frame["offset"] == frame["alert"]["offset"] and frame["epoch"]


def expected_fires(entries: list[tuple[str, list[dict]]], rules: dict[str, dict], tick: float) -> Counter:
    """The documented semantics (docs/alerts.md), as a plain reference model over the stream."""
    fires: Counter = Counter()
    armed = dict.fromkeys(rules, True)
    for _, trades in entries:
        for t in trades:
            p = t["price"]
            for user, rule in rules.items():
                up = rule["type"] == "above"
                back = p <= rule["price"] - tick if up else p >= rule["price"] + tick
                if not armed[user] and rule.get("trigger") == "every" and back:
                    armed[user] = True
                if armed[user] and (p >= rule["price"] if up else p <= rule["price"]):
                    fires[user] += 1
                    armed[user] = False
    return fires


def ingest_cmd(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "smarttrade"), "ingest", *args]


async def test_ingester_killed_and_resumed_fires_once(server, pools, settings, stores, tmp_path) -> None:
    """kill -9 of the ingester mid-replay and a resume, then one commit published again: every
    crossing fires once, as the reference model computes from the final stream."""
    rules = {
        "u1": {"price": 124800, "type": "below"},
        "u2": {"price": 124500, "type": "below", "trigger": "every"},
        "u3": {"price": 124900, "type": "above", "trigger": "every"},
        "u4": {"price": 125050, "type": "above"},
        "u5": {"price": 124000, "type": "below", "trigger": "every"},
    }
    for user, rule in rules.items():
        await stores.configs.set(user, "alerts", {"WIN": rule})
    await asyncio.sleep(0.01)  # commits come in later milliseconds than the arming
    (e1, h1), (e2, h2) = await gateway(server, pools, settings), await gateway(server, pools, settings)
    args = (
        "--synthetic",
        "--count",
        "300000",
        "--seed",
        "3",
        "--symbols",
        "WIN",
        "--start-day",
        "2025-11-24",
    )
    env = {**os.environ, "REDIS_URL": server.url}
    try:
        proc = subprocess.Popen(
            ingest_cmd(*args), env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        await wait_until(lambda: len(h1.raw_trades) > 0 or proc.poll() is not None, 60)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        killed_at = len(h1.raw_trades)
        done = subprocess.run(ingest_cmd(*args), env=env, cwd=tmp_path, capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr
        with redis.Redis(port=server.port, db=1) as r:
            entries = [(i.decode(), json.loads(f[b"trades"])) for i, f in r.xrange("stream:trades:WIN")]
        await wait_until(lambda: len(h1.raw_trades) == len(entries) == len(h2.raw_trades), 60)
        await e1.drain(60)
        await e2.drain(60)
        # the same commit published again (an ingester that re-sends): refused as already checked
        with redis.Redis(port=server.port) as r:
            r.publish("trades:WIN", h1.raw_trades[0])
        await wait_until(lambda: len(h1.raw_trades) == len(entries) + 1, 10)
        await e1.drain()
        await e2.drain()
        await asyncio.sleep(0.3)
    finally:
        await stop(e1, h1, e2, h2)
    want = expected_fires(entries, rules, float(spec_for("WIN").tick))
    assert sum(want.values()) > 5, want  # the path crosses the alerts several times
    assert e1.stats.fired + e2.stats.fired == sum(want.values()), (want, killed_at, len(entries))
    for hub in (h1, h2):
        assert Counter(u for u, _ in hub.sent) == +want, (want, killed_at, len(entries))
    for user in rules:  # the history keeps the last 100, each fire once
        kept = [(f["offset"], f["fired_at"]) for f in history(server, user)]
        assert len(kept) == min(100, want[user]) and len(set(kept)) == len(kept)


async def test_catch_up_after_engine_restart(server, pools, settings, stores: Stores) -> None:
    """Crossings while no engine runs are fired by the next one, from the trade stream."""
    await stores.configs.set("ann", "alerts", {"WIN": {"price": 125100, "type": "above"}})
    e1, h1 = await gateway(server, pools, settings)
    await live_trades(pools, settings, [125000, 125005], "before")
    await wait_until(lambda: len(h1.raw_trades) >= 1)
    await e1.drain()
    await stop(e1, h1)
    await live_trades(pools, settings, [125050, 125100, 125000], "while-down", T0 + 60_000_000)
    assert history(server, "ann") == []
    e2, h2 = await gateway(server, pools, settings)
    try:
        await e2.drain()
        await wait_until(lambda: len(history(server, "ann")) == 1)
    finally:
        await stop(e2, h2)
    assert e2.stats.caught_up >= 1 and e2.stats.fired == 1 and not e2.stats.gaps
    [fired] = history(server, "ann")
    assert fired["trade_price"] == 125100.0 and fired["epoch"]


async def test_a_lost_message_is_read_from_the_stream(server, pools, settings, stores: Stores) -> None:
    """The hub drops the crossing commit's message: the next message's seq shows the gap and the
    engine reads the stream before checking it."""
    await stores.configs.set("ann", "alerts", {"WIN": {"price": 125100, "type": "above"}})
    engine, hub = await gateway(server, pools, settings)
    hub.drop = lambda msg: any(t.price == 125100 for t in msg.trades)
    try:
        await live_trades(pools, settings, [125000, 125100, 125000, 125005, 125010], "lossy", pause=0.1)
        await wait_until(lambda: len(history(server, "ann")) == 1)
        await engine.drain()
    finally:
        await stop(engine, hub)
    assert engine.stats.seq_gaps >= 1 and engine.stats.caught_up >= 1 and engine.stats.fired == 1
    assert [u for u, _ in hub.sent] == ["ann"]


@pytest.fixture
async def client(server, pools, settings) -> Any:
    tokens = Tokens("s" * 32)
    app = create_app(GatewayContext(settings, pools, Stores(pools, settings), tokens))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
        c.headers["Authorization"] = f"Bearer {tokens.create('ann')}"
        c.other = {"Authorization": f"Bearer {tokens.create('bob')}"}  # type: ignore[attr-defined]
        yield c


async def test_api_alerts_lifecycle(server, client, stores: Stores) -> None:
    bad = await client.put("/api/me/alerts/DOL", json={"price": -1, "type": "above"})
    assert (
        bad.status_code == 422 and "alerts.DOL" in bad.json()["message"] and "price" in bad.json()["message"]
    )
    bad = await client.put("/api/me/alerts/DOL", json={"price": 5, "type": "sideways"})
    assert bad.status_code == 422 and "type" in bad.json()["message"]
    bad = await client.put("/api/me/alerts/dol", json={"price": 5, "type": "above"})
    assert bad.status_code == 422 and bad.json()["message"].startswith("symbol")
    assert (await client.get("/api/me/alerts")).json() == {"alerts": []}
    put = await client.put("/api/me/alerts/WIN", json={"price": 125000, "type": "above", "trigger": "every"})
    assert put.status_code == 200, put.text
    assert put.json()["state"] == "armed" and put.json()["trigger"] == "every"
    await client.put("/api/me/alerts/DOL", json={"price": 5.25, "type": "below"})
    listed = (await client.get("/api/me/alerts")).json()["alerts"]
    assert [(a["symbol"], a["state"]) for a in listed] == [("DOL", "armed"), ("WIN", "armed")]
    assert (await client.get("/api/me/alerts", headers=client.other)).json() == {"alerts": []}
    # a fire through the index, then the API shows it
    with redis.Redis(port=server.port) as r:
        sec, usec = r.time()
    from smarttrade.models import Trade

    offset = f"{sec * 1000 + usec // 1000 + 1000}-0"
    assert await stores.configs.alerts.check(
        "DOL", offset, "e", [Trade(price=5.2, volume=1, side="buy", time=7)]
    ) == ["ann"]
    fired = (await client.get("/api/me/alerts/fired")).json()["fired"]
    assert [(f["symbol"], f["trade_price"], f["offset"]) for f in fired] == [("DOL", 5.2, offset)]
    dol = (await client.get("/api/me/alerts")).json()["alerts"][0]
    assert dol["state"] == "fired" and dol["last_fired"]["offset"] == offset
    assert (await client.post("/api/me/alerts/DOL/rearm")).json()["state"] == "armed"
    assert (await client.post("/api/me/alerts/WDO/rearm")).status_code == 404
    assert (await client.delete("/api/me/alerts/DOL")).status_code == 204
    assert (await client.delete("/api/me/alerts/DOL")).status_code == 404
    assert await stores.configs.get("ann", "alerts") == {
        "WIN": {"price": 125000.0, "type": "above", "trigger": "every"}
    }
    assert (await client.get("/api/me/alerts", headers={"Authorization": "Bearer nope"})).status_code == 401
    assert "/api/me/alerts/{symbol}" in (await client.get("/openapi.json")).json()["paths"]
