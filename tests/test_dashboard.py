"""The dashboard in a real browser: Debian's Chromium driven by Playwright against `smarttrade demo`
(its own embedded Redis in a private folder, the live synthetic feed and the gateway), started and
stopped as a subprocess like a user would.

One long test on purpose: the demo takes seconds to start and a restart is part of the story (the
page shows it is disconnected, reconnects by itself and resumes by offset). Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from fastapi import FastAPI

from smarttrade.gateway import errors, page
from smarttrade.gateway.auth import Tokens
from smarttrade.gateway.context import GatewayContext
from smarttrade.ingest.engine import IngestStats
from smarttrade.ingest.figures import publish_figures
from smarttrade.keyspace import Store, stream_epoch_key
from smarttrade.redis.topology import Topology
from smarttrade.settings import Settings
from smarttrade.stores import Stores

CHROMIUM = "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}")

WAIT_MS = 30_000
START_S = 90.0  # the demo back-fills 2 h of trades before it serves the dashboard
SECRET = "dashboard-test-secret-0123456789abcdefghij"
# The screenshot stays in the test's tmp_path; SMARTTRADE_SCREENSHOT=PATH copies it out as well.
SHOT = os.environ.get("SMARTTRADE_SCREENSHOT")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Demo:
    """`smarttrade demo` in its own process group, its output in a file (read for the URL)."""

    def __init__(self, tmp: Path, port: int) -> None:
        self.tmp = tmp
        self.data = tmp / "data"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "SMARTTRADE_"))},
            "SMARTTRADE_DATA_DIR": str(self.data),
            "SMARTTRADE_GATEWAY_PORT": str(port),
            "SMARTTRADE_GATEWAY_SECRET": SECRET,
            "COLUMNS": "200",
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def start(self) -> str:
        """Start it; the dashboard URL it prints."""
        self.runs += 1
        self.log = self.tmp / f"demo-{self.runs}.log"
        cwd = self.tmp / "cwd"
        cwd.mkdir(exist_ok=True)  # no .env of the repo's steers it
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "smarttrade", "demo", "--duration", "600", "--rate", "30"],
                env=self.env,
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline:
            text = self.log.read_text(errors="replace")
            if found := re.search(r"^dashboard: (\S+)", text, re.M):
                return found[1]
            if self.proc.poll() is not None:
                pytest.fail(f"the demo exited ({self.proc.returncode}):\n{text[-3000:]}")
            time.sleep(0.2)
        pytest.fail(f"no dashboard URL within {START_S:g} s:\n{self.log.read_text(errors='replace')[-3000:]}")

    def stop(self) -> int | None:
        """SIGTERM and wait (bounded); the demo stops its gateway and its Redis (SHUTDOWN SAVE)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return proc.returncode if proc else None
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            return None

    def redis(self, store: Store) -> redis.Redis:
        """A client of the demo's own embedded server (its port is in server.json)."""
        port = int(json.loads((self.data / "server.json").read_text())["port"])
        return redis.Redis(host="127.0.0.1", port=port, db=Settings().db(store))

    def stop_its_redis(self) -> None:
        """A demo that had to be killed leaves its server running: stop that one, by its pid."""
        record = self.data / "server.json"
        if not record.exists():
            return
        try:
            pid = int(json.loads(record.read_text())["pid"])
            os.kill(pid, signal.SIGTERM)
        except (ValueError, KeyError, ProcessLookupError, PermissionError):
            pass


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    d = Demo(tmp_path, _free_port())
    try:
        yield d
    finally:
        if d.stop() is None:
            d.stop_its_redis()


NA = "\u2013"  # the page's "no value yet" (an en dash)


def _texts(page, selector: str) -> list[str]:  # type: ignore[no-untyped-def]
    return page.eval_on_selector_all(selector, "nodes => nodes.map(n => n.textContent)")


def _wait(page, js: str, arg: object = None) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_function(js, arg=arg, timeout=WAIT_MS)


def _wait_changed(page, selector: str, before: list[str]) -> None:  # type: ignore[no-untyped-def]
    _wait(
        page,
        "([sel, before, na]) => [...document.querySelectorAll(sel)]"
        ".some((n, i) => n.textContent !== before[i] && n.textContent !== na)",
        [selector, before, NA],
    )


def _rows_at_least(page, selector: str, n: int) -> None:  # type: ignore[no-untyped-def]
    _wait(page, "([sel, n]) => document.querySelectorAll(sel).length >= n", [selector, n])


LASTS = "#watchlist tbody td.last"


def _check_live_panels(page) -> None:  # type: ignore[no-untyped-def]
    # the watchlist's quotes move, with their change from the session's open
    _wait(
        page,
        "([sel, na]) => [...document.querySelectorAll(sel)].every(n => n.textContent !== na)",
        [LASTS, NA],
    )
    first = _texts(page, LASTS)
    assert len(first) == 3 and all(re.fullmatch(r"\d+(\.\d+)?", t) for t in first), first
    _wait_changed(page, LASTS, first)
    pct = "#watchlist tbody td.pct"
    _wait(page, "([sel, na]) => document.querySelector(sel).textContent !== na", [pct, NA])
    changes = _texts(page, pct)
    assert any(re.fullmatch(r"[+-]?\d+\.\d\d%", t) for t in changes), changes

    # the tape fills, each row a buy (green) or a sell (red); the size filter hides small prints
    _rows_at_least(page, "#tape tbody tr", 20)
    sides = page.eval_on_selector_all("#tape tbody tr", "rows => rows.map(r => r.className.split(' ')[0])")
    assert set(sides) == {"buy", "sell"}, set(sides)
    sizes = [float(s) for s in _texts(page, "#tape tbody tr td:nth-child(3)")]
    cut = sorted(sizes)[len(sizes) // 2] + 1
    page.fill("#tape-min", str(cut))
    shown = [float(s) for s in _texts(page, "#tape tbody tr:not(.hidden) td:nth-child(3)")]
    assert shown and min(shown) >= cut and len(shown) < len(sizes)
    page.fill("#tape-min", "0")

    # the footprint ladder: one POC row, at the price the bar's metrics give; a value area
    page.wait_for_selector("#ladder tr.poc td.px", timeout=WAIT_MS)
    # read in one go: the ladder redraws live between two separate reads
    pocs, poc_price, summary_poc = page.evaluate(
        """() => {
            const rows = document.querySelectorAll('#ladder tr.poc');
            const summary = document.querySelector('#ladder-summary');
            return [rows.length, rows.length ? +rows[0].dataset.price : null, +summary.dataset.poc];
        }"""
    )
    assert pocs == 1 and summary_poc == pytest.approx(poc_price)
    assert page.locator("#ladder tr.va").count() >= 1

    # indicators and the bars' VWAP have values
    page.wait_for_selector("#indicators tr[data-name=rsi] td.value", timeout=WAIT_MS)
    assert 0 <= float(page.text_content("#indicators tr[data-name=rsi] td.value")) <= 100
    assert page.locator("#indicators td.value").count() >= 10
    assert re.fullmatch(r"VWAP \d+(\.\d+)?", page.text_content("#bars-vwap") or "")
    assert page.locator("#bars-table tbody tr").count() >= 10

    # the health strip reads Redis
    _wait(page, "() => /\\d+\\.\\d MiB/.test(document.querySelector('#health [data-k=mem] i').textContent)")
    assert page.text_content("#health [data-k=redis] i") == "up"
    assert re.fullmatch(r"[\d,]+", page.text_content("#health [data-k=ops] i") or "")


def _check_alerts(page) -> None:  # type: ignore[no-untyped-def]
    """An alert at a price the feed will cross fires into the fired list; a bad one is refused."""
    price = page.evaluate("() => window.dashboard.state.quotes.get('DOL').price")
    page.select_option("#alert-symbol", "DOL")
    page.select_option("#alert-type", "above")
    target = price - 1.0  # two ticks under the last trade: the next trade at or above it fires it
    page.fill("#alert-price", f"{target:.1f}")
    page.click("#alert-form button[type=submit]")
    # its record, among any others (the demo's own alert may fire meanwhile)
    mine = page.locator("#alerts-fired li[data-symbol=DOL]", has_text=f"DOL above {target:.1f} @")
    mine.first.wait_for(timeout=WAIT_MS)
    assert mine.count() == 1
    page.wait_for_selector("#alerts-list tr[data-symbol=DOL][data-state=fired]", timeout=WAIT_MS)
    assert page.text_content("#alert-error") == ""

    page.eval_on_selector("#alert-price", "n => n.removeAttribute('min')")
    page.fill("#alert-price", "-5")
    page.eval_on_selector("#alert-form", "f => f.requestSubmit()")
    _wait(page, "() => document.querySelector('#alert-error').textContent !== ''")
    assert "price" in (page.text_content("#alert-error") or "")  # the API names the field


def _check_keys_and_theme(page, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # Tab from the header: its buttons, then one stop for the whole watchlist (its selected row)
    page.focus("#theme-toggle")
    here = "() => { const n = document.activeElement; return n.id || `${n.tagName}:${n.dataset.symbol}`; }"
    stops = []
    for _ in range(3):
        page.keyboard.press("Tab")
        stops.append(page.evaluate(here))
    assert stops == ["help-toggle", "TR:DOL", "alert-symbol"], stops
    page.keyboard.press("Shift+Tab")
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none"), outline
    page.focus("body")
    page.keyboard.press("Escape")
    page.keyboard.press("j")
    page.wait_for_selector("#watchlist tr[data-symbol=WDO][aria-selected=true]", timeout=WAIT_MS)
    assert page.text_content("#ladder-sym") == "WDO"
    assert page.evaluate("() => document.activeElement.dataset.symbol") == "WDO"  # visible focus
    page.keyboard.press("ArrowUp")
    page.wait_for_selector("#watchlist tr[data-symbol=DOL][aria-selected=true]", timeout=WAIT_MS)
    # h/l step through the bars; an older bar has its own footprint and POC
    _wait(page, "() => document.querySelector('#ladder-bar').textContent.includes('live')")
    _rows_at_least(page, "#bars-table tbody tr", 10)
    live_start = page.get_attribute("#bars-table tr.selected", "data-index")
    page.keyboard.press("h")
    page.wait_for_function(
        "() => !document.querySelector('#ladder-bar').textContent.includes('live')", timeout=WAIT_MS
    )
    assert page.get_attribute("#bars-table tr.selected", "data-index") == str(int(live_start) - 1)
    page.wait_for_selector("#ladder tr.poc", timeout=WAIT_MS)
    page.keyboard.press("l")
    _wait(page, "() => document.querySelector('#ladder-bar').textContent.includes('live')")
    page.select_option("#ladder-tf", "5m")
    _wait(page, "() => document.querySelector('#ladder-bar').textContent.includes('5m')")
    page.wait_for_selector("#ladder tr.poc", timeout=WAIT_MS)
    page.select_option("#ladder-tf", "1m")
    page.focus("body")
    page.keyboard.press("?")
    assert page.is_visible("#help")
    page.keyboard.press("Escape")
    assert page.is_hidden("#help")

    # the theme follows config:USER:theme; the toggle saves it, a reload keeps it
    assert page.get_attribute("html", "data-theme") == "dark"  # the demo user's setting
    page.keyboard.press("t")
    assert page.get_attribute("html", "data-theme") == "light"
    _wait(
        page,
        "async () => { const t = new URLSearchParams(location.search).get('token');"
        " const r = await fetch('/api/me/settings/theme', {headers: {Authorization: 'Bearer ' + t}});"
        " return (await r.json()).value === 'light'; }",
    )
    page.reload(timeout=WAIT_MS)
    page.wait_for_selector("#conn[data-state=live]", timeout=WAIT_MS)
    _wait(page, "() => document.documentElement.dataset.theme === 'light'")
    page.wait_for_selector("#ladder tr.poc", timeout=WAIT_MS)
    _rows_at_least(page, "#tape tbody tr", 20)
    page.screenshot(path=str(tmp_path / "dashboard-light.png"), full_page=True)
    page.keyboard.press("t")
    assert page.get_attribute("html", "data-theme") == "dark"


def _check_restart(page, demo: Demo, url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Stop the demo (gateway, feed and Redis): the banner says so. Start it again: the page
    reconnects by itself, resumes each symbol from its offset and goes live again."""
    acks_before = page.evaluate("() => window.dashboard.state.acks.length")
    assert demo.stop() is not None, "the demo did not stop on SIGTERM within 30 s"
    page.wait_for_selector("#banner:not([hidden])", timeout=WAIT_MS)
    assert "Disconnected" in (page.text_content("#banner") or "")
    assert page.get_attribute("#conn", "data-state") in ("down", "connecting")
    page.screenshot(path=str(tmp_path / "dashboard-disconnected.png"), full_page=True)
    stale = _texts(page, LASTS)
    again = demo.start()
    assert again.split("/?")[0] == url.split("/?")[0]  # same port; same secret: the page's token holds
    page.wait_for_selector("#conn[data-state=live]", timeout=WAIT_MS)
    page.wait_for_selector("#banner", state="hidden", timeout=WAIT_MS)
    acks = page.evaluate(f"() => window.dashboard.state.acks.slice({acks_before})")
    assert {a["symbol"] for a in acks} == {"DOL", "WDO", "WIN"}, acks
    assert all(a["recovered"] is True for a in acks), acks  # the stream held what it missed
    _wait_changed(page, LASTS, stale)
    _wait(page, "() => document.querySelector('#health [data-k=redis] i').textContent === 'up'")


def _new_epoch(demo: Demo, symbol: str, old: str) -> None:
    """Delete the symbol's epoch key, as a Redis restarted empty would lose it; its next commit
    makes a new one (bounded wait)."""
    with demo.redis(Store.ORDERFLOW) as db:
        assert db.delete(stream_epoch_key(symbol)) == 1
        deadline = time.monotonic() + 10
        while db.get(stream_epoch_key(symbol)) in (None, old.encode()):
            assert time.monotonic() < deadline, "no commit made a new epoch in 10 s"
            time.sleep(0.05)


def _check_lost_history(page, demo: Demo) -> None:  # type: ignore[no-untyped-def]
    """History lost while live (a new epoch in a trades frame) and while away (a snapshot with
    recovered:false after the reconnect): either way the page reloads that symbol."""
    position = "s => window.dashboard.socket.positions.get(s).epoch"
    reloads = "s => window.dashboard.state.reloads[s] ?? 0"
    epoch = page.evaluate(position, "WIN")
    before = page.evaluate(reloads, "WIN")
    _new_epoch(demo, "WIN", epoch)
    _wait(page, f"([s, n]) => ({reloads})(s) > n", ["WIN", before])
    epoch = page.evaluate(position, "WIN")

    page.evaluate("() => window.dashboard.socket.pause()")
    page.wait_for_selector("#banner:not([hidden])", timeout=WAIT_MS)
    _new_epoch(demo, "WIN", epoch)
    acks_before = page.evaluate("() => window.dashboard.state.acks.length")
    before = page.evaluate(reloads, "WIN")
    page.evaluate("() => window.dashboard.socket.resume()")
    _wait(page, "n => window.dashboard.state.acks.length >= n + 3", acks_before)
    page.wait_for_selector("#conn[data-state=live]", timeout=WAIT_MS)
    acks = {a["symbol"]: a for a in page.evaluate(f"() => window.dashboard.state.acks.slice({acks_before})")}
    assert acks["WIN"]["recovered"] is False, acks
    assert acks["DOL"]["recovered"] is True and acks["WDO"]["recovered"] is True, acks
    _wait(page, f"([s, n]) => ({reloads})(s) > n", ["WIN", before])
    assert page.evaluate(position, "WIN") != epoch
    page.click("#watchlist tr[data-symbol=WIN]")  # its reloaded state shows
    page.wait_for_selector("#ladder tr.poc", timeout=WAIT_MS)
    _rows_at_least(page, "#tape tbody tr", 5)
    page.click("#watchlist tr[data-symbol=DOL]")


@needs_chromium
def test_the_dashboard_live_alerts_theme_keys_and_recovery(demo: Demo, tmp_path: Path) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    url = demo.start()
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(url, timeout=WAIT_MS)
            page.wait_for_selector("#conn[data-state=live]", timeout=WAIT_MS)
            assert page.is_hidden("#banner")
            _check_live_panels(page)
            _check_alerts(page)
            _check_keys_and_theme(page, tmp_path)
            _check_restart(page, demo, url, tmp_path)
            _check_lost_history(page, demo)
            page.wait_for_selector("#ladder tr.poc", timeout=WAIT_MS)
            _rows_at_least(page, "#tape tbody tr", 20)
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
            if SHOT:
                shutil.copyfile(tmp_path / "dashboard.png", SHOT)
            # a bad token: the page still loads, and says plainly what is wrong
            bad = browser.new_page()
            bad.goto(url.split("?")[0] + "?token=not-a-token", timeout=WAIT_MS)
            bad.wait_for_selector("#banner:not([hidden])", timeout=WAIT_MS)
            assert "token" in (bad.text_content("#banner") or "")
            assert errors == [], errors
        finally:
            browser.close()


# -- the page's own routes, without a browser (ASGI, real Redis) ----------------------------------

STATIC = Path(__file__).resolve().parents[1] / "src" / "smarttrade" / "gateway" / "static"
TEST_SECRET = "x" * 40


def _app(topology: Topology, settings: Settings, stores: Stores) -> FastAPI:
    app = FastAPI()
    errors.install(app)
    app.include_router(page.router)
    app.state.ctx = GatewayContext(settings, topology, stores, Tokens(TEST_SECRET))
    return app


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_the_page_and_its_modules_load_without_a_token(
    pools: Topology, settings: Settings, stores
) -> None:
    async with _client(_app(pools, settings, stores)) as http:
        index = await http.get("/")
        assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
        assert '<script type="module" src="/static/js/main.js">' in index.text
        # every module the page imports is served, as JavaScript (browsers refuse other types)
        for module in sorted((STATIC / "js").glob("*.js")):
            for name in re.findall(r'from "\./([a-z]+\.js)"', module.read_text()):
                assert (STATIC / "js" / name).is_file(), f"{module.name} imports a missing {name}"
            got = await http.get(f"/static/js/{module.name}")
            assert got.status_code == 200 and got.headers["content-type"].startswith("text/javascript")
        css = await http.get("/static/dashboard.css")
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
        for path in ("/static/%2e%2e/page.py", "/static/..%2fpage.py", "/static/nothing.js", "/static/js"):
            assert (await http.get(path)).status_code == 404, path


async def test_the_health_strip_needs_a_token_and_reads_redis(
    pools: Topology, settings: Settings, stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(page, "HEALTH_MAX_AGE_S", 0.0)  # every call a fresh reading
    token = Tokens(TEST_SECRET).create("alice")
    auth = {"Authorization": f"Bearer {token}"}
    async with _client(_app(pools, settings, stores)) as http:
        refused = await http.get("/api/dashboard/health")
        assert refused.status_code == 401 and refused.json()["code"] == "unauthorized"
        assert (
            await http.get("/api/dashboard/health", headers={"Authorization": "Bearer nope"})
        ).status_code == 401

        first = (await http.get("/api/dashboard/health", params={"token": token})).json()
        assert first["redis_up"] is True and first["error"] is None
        info = await pools.admin.info("memory")
        assert abs(first["used_memory"] - info["used_memory"]) < 8 * 2**20
        assert first["clients"] >= 1
        assert {c["check"] for c in first["checks"]} >= {"memory", "connections", "hit_rate", "ops"}
        assert first["alert_level"] in ("ok", "warning", "critical")
        assert first["ingest_lag_ms"] is None and first["ingesters"] == []

        # an ingester's published figures show up as the strip's ingest lag
        stats = IngestStats(trades=120, commits=4, lag_ms=12.5)
        await publish_figures(pools.client(Store.QUOTES), "feed-a", stats)
        await publish_figures(pools.client(Store.QUOTES), "feed-b", IngestStats(lag_ms=3.0))
        await stores.quotes.latest("DOL")  # a lookup between readings: the rates have a window
        second = (await http.get("/api/dashboard/health", headers=auth)).json()
        assert second["ingest_lag_ms"] == pytest.approx(12.5)
        assert [i["source"] for i in second["ingesters"]] == ["feed-a", "feed-b"]
        assert second["ingesters"][0]["trades"] == 120
        assert second["ops_s"] is not None and second["ops_s"] >= 0


async def test_the_health_strip_says_when_redis_is_away(settings: Settings, stores) -> None:
    port = _free_port()  # nothing listens there
    away = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{port}/0"})
    topology = Topology.standalone(f"redis://127.0.0.1:{port}/0", away, 4, socket_timeout=1.0)
    try:
        async with _client(_app(topology, away, stores)) as http:
            got = await http.get(
                "/api/dashboard/health",
                headers={"Authorization": f"Bearer {Tokens(TEST_SECRET).create('bob')}"},
            )
        assert got.status_code == 200
        body = got.json()
        assert body["redis_up"] is False and str(port) in body["error"]
    finally:
        await topology.aclose()
