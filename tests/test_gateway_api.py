"""The gateway's HTTP API served by a real uvicorn on 127.0.0.1 over a real Redis: its values equal
the stores' after a small synthetic ingest, and every error is JSON {"code","message"}."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import httpx
import jwt
import pytest

from smarttrade.analytics.views import AnalyticsViews
from smarttrade.feeds.synthetic import SyntheticFeed
from smarttrade.gateway.app import create_app
from smarttrade.gateway.auth import Tokens
from smarttrade.gateway.context import GatewayContext
from smarttrade.gateway.server import Gateway
from smarttrade.ingest.run import ChunkFeed, run_feed
from smarttrade.keyspace import Store, trades_stream_key
from smarttrade.models import decode_stream_entry, to_builtins
from smarttrade.redis.topology import Topology
from smarttrade.settings import Settings
from smarttrade.stores import Stores
from tests.conftest import run_smarttrade

SECRET = "test-secret-" + "x" * 32
TRADES = 3000


@dataclass
class Served:
    http: httpx.AsyncClient
    ctx: GatewayContext
    tokens: Tokens

    def auth(self, user: str = "alice", admin: bool = False) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens.create(user, admin=admin)}"}


@asynccontextmanager
async def serve(settings: Settings, topology: Topology, stores: Stores) -> AsyncIterator[Served]:
    tokens = Tokens(SECRET)
    ctx = GatewayContext(settings, topology, stores, tokens)
    gw = Gateway(create_app(ctx), "127.0.0.1", 0)
    await gw.start()
    try:
        async with httpx.AsyncClient(base_url=gw.url, timeout=20) as http:
            yield Served(http, ctx, tokens)
    finally:
        await gw.stop()


@pytest.fixture
async def gw(settings: Settings, pools: Topology, stores: Stores) -> AsyncIterator[Served]:
    async with serve(settings, pools, stores) as served:
        yield served


async def ingest(pools: Topology, settings: Settings) -> None:
    syn = SyntheticFeed(["WIN", "DOL"], seed=3, count=TRADES, chunk=300, start_day=date(2025, 11, 24))
    result = await run_feed(pools, settings, ChunkFeed(syn.chunks, syn.name, total=TRADES), None)
    assert result.stats.trades == TRADES


def assert_error(response: httpx.Response, status: int, *words: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "message"}, body
    for word in words:
        assert word in body["message"], body
    return body


async def test_market_data_equals_the_stores(gw: Served, pools: Topology, settings: Settings, stores) -> None:
    await ingest(pools, settings)
    h = gw.auth()
    for symbol in ("WIN", "DOL"):
        latest = await stores.quotes.latest(symbol)
        got = (await gw.http.get(f"/api/quotes/{symbol}", headers=h)).json()
        assert got == {"bid": None, "ask": None, **to_builtins(latest)}
        history = (await gw.http.get(f"/api/quotes/{symbol}/history", headers=h)).json()
        expected = [to_builtins(q) for q in await stores.quotes.history(symbol)]
        assert len(history["quotes"]) == len(expected) > 0
        assert [(q["timestamp"], q["price"], q["volume"]) for q in history["quotes"]] == [
            (q["timestamp"], q["price"], q["volume"]) for q in expected
        ]
        ladder = (await gw.http.get(f"/api/footprint/{symbol}", headers=h)).json()["levels"]
        expected_ladder = await stores.footprint.ladder(symbol)
        assert len(ladder) == len(expected_ladder) > 0
        assert [(lv["level"], lv["buy_volume"], lv["sell_volume"], lv["imbalance"]) for lv in ladder] == [
            (lv, fp.buy_volume, fp.sell_volume, fp.imbalance) for lv, fp in expected_ladder
        ]
    watch = (await gw.http.get("/api/quotes", params={"symbols": "win,DOL"}, headers=h)).json()
    assert set(watch["quotes"]) == {"WIN", "DOL"}
    assert watch["quotes"]["DOL"]["price"] == (await stores.quotes.latest("DOL")).price
    # a known symbol with no data: null in a watchlist, 404 alone
    watch = (await gw.http.get("/api/quotes", params={"symbols": "WDO"}, headers=h)).json()
    assert watch == {"quotes": {"WDO": None}}
    assert_error(await gw.http.get("/api/quotes/WDO", headers=h), 404, "no quote for WDO")


async def test_the_tape_pages_through_the_stream(gw: Served, pools: Topology, settings: Settings) -> None:
    await ingest(pools, settings)
    h = gw.auth()
    raw = await pools.client(Store.ORDERFLOW).xrange(trades_stream_key("WIN"))
    expected = [(i.decode(), decode_stream_entry(f, "x")) for i, f in raw]
    assert len(expected) >= 2  # chunks of 300: several commits (how many depends on timing)
    pages, after = [], None
    while True:
        params = {"limit": 1, **({"after": after} if after else {})}
        page = (await gw.http.get("/api/trades/WIN", params=params, headers=h)).json()
        assert page["complete"] is True and page["epoch"]
        pages.extend(page["entries"])
        after = page["next"]
        if after is None:
            break
        assert len(pages) < 10_000
    assert [e["offset"] for e in pages] == [i for i, _ in expected]
    assert [len(e["trades"]) for e in pages] == [len(e.trades) for _, e in expected]
    first = pages[0]["trades"][0]
    assert first == to_builtins(expected[0][1].trades[0])
    # since a time: the entries from that millisecond on
    ms = int(expected[2][0].split("-")[0])
    page = (
        await gw.http.get("/api/trades/WIN", params={"since": ms / 1000, "limit": 1000}, headers=h)
    ).json()
    assert page["entries"][0]["offset"] <= expected[2][0]
    assert page["entries"][-1]["offset"] == expected[-1][0]
    # an offset from before the stream began, nothing trimmed since: complete (on Redis 7, which
    # counts what was added; 6.2 cannot tell and says not complete, never a silent gap)
    early = (await gw.http.get("/api/trades/WIN", params={"after": "1-0"}, headers=h)).json()
    redis7 = int((await gw.ctx.topology.admin.info("server"))["redis_version"].split(".")[0]) >= 7
    assert early["complete"] is redis7
    # its first entries trimmed: an offset before them is not complete
    await gw.ctx.topology.client(Store.ORDERFLOW).xtrim(
        "stream:trades:WIN", minid=expected[2][0], approximate=False
    )
    gone = (await gw.http.get("/api/trades/WIN", params={"after": expected[0][0]}, headers=h)).json()
    assert gone["complete"] is False
    other = (await gw.http.get("/api/trades/WIN", params={"epoch": "old"}, headers=h)).json()
    assert other["complete"] is False
    assert_error(await gw.http.get("/api/trades/WIN", params={"after": "x"}, headers=h), 422, "after")
    assert_error(
        await gw.http.get("/api/trades/WIN", params={"after": "1-0", "since": 1}, headers=h), 422, "after"
    )
    assert_error(await gw.http.get("/api/trades/WIN", params={"limit": 0}, headers=h), 422, "limit")


async def test_bars_and_indicators_equal_the_views(gw: Served, pools: Topology, settings, stores) -> None:
    await ingest(pools, settings)
    h = gw.auth()
    views = await AnalyticsViews(pools, settings).recent_bars("WIN", "1m", 5)
    got = (await gw.http.get("/api/bars/WIN", params={"timeframe": "1m", "count": 5}, headers=h)).json()
    assert [b["start"] for b in got["bars"]] == [v.start for v in views] and views
    last, view = got["bars"][-1], views[-1]
    assert last["close"] == float(view.fields["close"]) and last["volume"] == float(view.fields["volume"])
    assert view.footprint is not None
    assert last["footprint"]["poc"] == view.footprint.poc / 1  # WIN's price scale is 1
    assert len(last["footprint"]["levels"]) == len(view.footprint.levels)
    assert_error(await gw.http.get("/api/bars/WIN", params={"timeframe": "7m"}, headers=h), 422, "timeframe")
    ind = (await gw.http.get("/api/indicators/WIN", headers=h)).json()
    closed = await stores.calc.all("WIN")
    assert set(ind["closed"]) == set(closed) and closed
    for name, calc in closed.items():
        assert ind["closed"][name]["value"] == calc.value


async def test_settings_and_session_of_the_user(gw: Served, stores: Stores) -> None:
    h = gw.auth("alice")
    assert_error(await gw.http.get("/api/me/settings/theme", headers=h), 404, "theme")
    put = await gw.http.put("/api/me/settings/theme", json="dark", headers=h)
    assert put.status_code == 200 and put.json() == {"name": "theme", "value": "dark"}
    assert await stores.configs.get("alice", "theme") == "dark"
    assert (await gw.http.get("/api/me/settings/theme", headers=h)).json()["value"] == "dark"
    assert (await gw.http.get("/api/me/settings", headers=h)).json() == {"settings": {"theme": "dark"}}
    # the validating store names the field and the reason
    body = assert_error(await gw.http.put("/api/me/settings/theme", json="pink", headers=h), 422, "theme")
    assert body["code"] == "invalid"
    assert_error(
        await gw.http.put("/api/me/settings/alerts", json={"DOL": {"price": -1, "type": "above"}}, headers=h),
        422,
        "alerts.DOL",
    )
    assert_error(await gw.http.put("/api/me/settings/Bad!", json=1, headers=h), 422, "setting")
    assert (await gw.http.delete("/api/me/settings/theme", headers=h)).json() == {"deleted": True}
    assert await stores.configs.get("alice", "theme") is None
    # the session, as the sessions store holds it
    assert_error(await gw.http.get("/api/me/session", headers=h), 404, "alice")
    await stores.sessions.open("alice", "sock1", ["WIN"])
    session = (await gw.http.get("/api/me/session", headers=h)).json()
    assert session["socket_id"] == "sock1" and session["subscriptions"] == ["WIN"]
    admin = gw.auth("root", admin=True)
    assert (await gw.http.get("/api/users/alice/session", headers=admin)).json() == session
    assert (await gw.http.delete("/api/users/alice/session", headers=admin)).json() == {"deleted": True}
    assert await stores.sessions.get("alice") is None


async def test_errors_are_json_with_the_field(gw: Served) -> None:
    h = gw.auth()
    assert_error(await gw.http.get("/api/quotes/ZZZ", headers=h), 404, "unknown symbol 'ZZZ'")
    assert_error(await gw.http.get("/api/quotes/A:B", headers=h), 422, "symbol")
    assert_error(await gw.http.get("/api/quotes", headers=h), 422, "symbols")
    assert_error(await gw.http.get("/api/quotes", params={"symbols": ",,"}, headers=h), 422, "symbols")
    assert_error(await gw.http.get("/api/nothing", headers=h), 404)
    assert_error(await gw.http.post("/api/quotes/WIN", headers=h), 405)
    assert_error(await gw.http.get("/api/quotes/WIN"), 401, "no token")
    body = assert_error(await gw.http.put("/api/me/settings/theme", content=b"{not json", headers=h), 422)
    assert body["code"] == "invalid"


async def test_health_metrics_and_ops(gw: Served) -> None:
    health = await gw.http.get("/healthz")  # a canary published through Redis reached the hub
    assert health.status_code == 200, health.text
    body = health.json()
    assert body["ok"] is True and body["redis"]["ok"] is True and body["delivery"]["ok"] is True
    hub = gw.ctx.hub
    assert hub is not None
    await hub.stop()  # no pub/sub reader any more: Redis answers, but nothing is delivered
    late = await gw.http.get("/healthz")
    assert late.status_code == 503, late.text
    assert late.json()["code"] == "unhealthy" and "not delivered within" in late.json()["message"]
    assert late.json()["redis"]["ok"] is True

    metrics = await gw.http.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    assert "\nredis_up 1.0\n" in metrics.text and "redis_connected_clients" in metrics.text
    status = await gw.http.get("/api/ops/status", headers=gw.auth("root", admin=True))
    assert status.status_code == 200 and {s["store"] for s in status.json()["stores"]} >= {"quotes", "config"}
    assert (await gw.http.get("/")).status_code == 200


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed when we leave: nothing listens there


async def test_redis_down_is_503(settings: Settings) -> None:
    url = f"redis://127.0.0.1:{_closed_port()}/0"
    down = settings.model_copy(update={"redis_url": url})
    topology = Topology.standalone(url, down, 4)
    try:
        async with serve(down, topology, Stores(topology, down)) as served:
            body = assert_error(
                await served.http.get("/api/quotes/WIN", headers=served.auth()), 503, "cannot reach Redis"
            )
            assert body["code"] == "redis_unavailable"
            health = await served.http.get("/healthz")
            assert health.status_code == 503 and health.json()["redis"]["ok"] is False
            metrics = await served.http.get("/metrics")
            assert metrics.status_code == 200 and "\nredis_up 0.0\n" in metrics.text
    finally:
        await topology.aclose()


# -- the commands ---------------------------------------------------------------------------------


def _env(server, **extra: str) -> dict[str, str]:
    return {**os.environ, "REDIS_URL": server.url, "PYTHONUNBUFFERED": "1", "COLUMNS": "200", **extra}


def _smarttrade() -> list[str]:
    exe = shutil.which("smarttrade", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "smarttrade"]


def _start(args: list[str], env: dict[str, str], pattern: str) -> tuple[subprocess.Popen[str], re.Match[str]]:
    """Start a long-running command and wait (bounded) for the stdout line matching ``pattern``."""
    proc = subprocess.Popen(
        [*_smarttrade(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        found = re.search(pattern, line)
        if found:
            return proc, found
    proc.kill()
    raise AssertionError(f"no {pattern!r} in {seen}; stderr: {proc.stderr.read() if proc.stderr else ''}")


def test_gateway_refuses_to_start_without_a_secret(server) -> None:
    result = run_smarttrade("gateway", "--port", "0", env=_env(server), timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("SMARTTRADE_GATEWAY_SECRET: not set")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    short = run_smarttrade("gateway", env=_env(server, SMARTTRADE_GATEWAY_SECRET="short"), timeout=60)
    assert short.returncode == 2 and short.stderr.startswith("SMARTTRADE_GATEWAY_SECRET: must be at least 32")


def test_token_create(server) -> None:
    env = _env(server, SMARTTRADE_GATEWAY_SECRET=SECRET)
    made = run_smarttrade("token", "create", "alice", "--admin", "--ttl", "30m", env=env, timeout=60)
    assert made.returncode == 0, made.stderr
    who = Tokens(SECRET).verify(made.stdout.strip())
    assert (who.user, who.admin) == ("alice", True)
    claims = jwt.decode(made.stdout.strip(), options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 1800
    for args, field in ((["a:b"], "user"), (["alice", "--ttl", "soon"], "ttl"), (["a", "--ttl", "0"], "ttl")):
        bad = run_smarttrade("token", "create", *args, env=env, timeout=60)
        assert bad.returncode == 2 and bad.stderr.startswith(field), bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1
    none = run_smarttrade("token", "create", "alice", env=_env(server), timeout=60)
    assert none.returncode == 2 and none.stderr.startswith("SMARTTRADE_GATEWAY_SECRET")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_gateway_serves_and_stops_cleanly(server, sig: signal.Signals) -> None:
    env = _env(server, SMARTTRADE_GATEWAY_SECRET=SECRET)
    proc, found = _start(["gateway", "--port", "0"], env, r"on (http://127\.0\.0\.1:\d+)")
    try:
        url = found[1]
        token = Tokens(SECRET).create("alice")
        with httpx.Client(base_url=url, timeout=10) as http:
            assert http.get("/healthz").json()["redis"]["ok"] is True
            assert http.get("/api/me/settings", params={"token": token}).json() == {"settings": {}}
            assert http.get("/api/me/settings").status_code == 401
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == 0
        assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_port_in_use_is_one_line(server) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        env = _env(server, SMARTTRADE_GATEWAY_SECRET=SECRET)
        result = run_smarttrade("gateway", "--port", port, env=env, timeout=60)
    assert result.returncode == 2 and "cannot listen on 127.0.0.1" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.one_binary
def test_the_demo_serves_the_dashboard_with_its_token(server) -> None:
    args = ["demo", "--symbols", "WIN", "--rate", "20", "--duration", "6"]
    proc, found = _start(args, _env(server), r"^dashboard: (http://127\.0\.0\.1:(\d+))/\?token=(\S+)$")
    try:
        base, token = found[1], found[3]
        with httpx.Client(base_url=base, timeout=10) as http:
            assert http.get(f"/?token={token}").status_code == 200
            me = http.get("/api/me/session", params={"token": token})
            assert me.status_code == 200 and me.json()["user_id"] == "demo", me.text
            deadline = time.monotonic() + 20
            while (quote := http.get("/api/quotes/WIN", params={"token": token})).status_code == 404:
                assert time.monotonic() < deadline, quote.text  # the back-fill writes quotes first
                time.sleep(0.2)
            assert quote.status_code == 200 and quote.json()["symbol"] == "WIN"
            assert http.get("/api/quotes/WIN", params={"token": token + "x"}).status_code == 401
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr
        assert re.search(r"^done: [\d,]+ trades", stdout, re.M), stdout
        assert "Traceback" not in stderr
    finally:
        if proc.poll() is None:
            proc.kill()


def test_the_gateway_on_granian(server) -> None:
    """granian's worker builds the app from the environment (app_from_env, factory)."""
    port = _closed_port()
    env = _env(server, SMARTTRADE_GATEWAY_SECRET=SECRET)
    proc, _ = _start(["gateway", "--server", "granian", "--port", str(port)], env, r"\(granian\) on http")
    try:
        token = Tokens(SECRET).create("alice")
        deadline = time.monotonic() + 30
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            while True:
                try:
                    response = http.get("/api/me/settings", params={"token": token})
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "granian did not answer"
                    time.sleep(0.2)
            assert response.status_code == 200 and response.json() == {"settings": {}}
            assert http.get("/api/quotes/ZZZ", params={"token": token}).status_code == 404
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


async def test_responses_are_not_held_by_nagle(gw: Served) -> None:
    """The listening socket says it is TCP, so asyncio sets TCP_NODELAY on each connection:
    without it every response waited ~40 ms for the client's delayed ACK (measured 44 ms p50)."""
    times = []
    for _ in range(30):
        started = time.perf_counter()
        assert (await gw.http.get("/docs")).status_code == 200
        times.append(time.perf_counter() - started)
    times.sort()
    assert times[15] < 0.025, f"median {times[15] * 1000:.1f} ms"
