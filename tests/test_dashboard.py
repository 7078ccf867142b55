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

import pytest

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}")

WAIT_MS = 30_000
START_S = 90.0  # the demo back-fills 2 h of trades before it serves the dashboard
SECRET = "dashboard-test-secret-0123456789abcdefghij"
SHOT = Path(__file__).resolve().parents[1] / "screenshot-dashboard.png"


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
    assert page.locator("#ladder tr.poc").count() == 1
    poc_price = float(page.get_attribute("#ladder tr.poc", "data-price"))
    assert float(page.get_attribute("#ladder-summary", "data-poc")) == pytest.approx(poc_price)
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
    fired = "#alerts-fired li[data-symbol=DOL]"
    before = page.locator(fired).count()
    page.select_option("#alert-symbol", "DOL")
    page.select_option("#alert-type", "above")
    target = price - 1.0  # two ticks under the last trade: the next trade at or above it fires it
    page.fill("#alert-price", f"{target:.1f}")
    page.click("#alert-form button[type=submit]")
    _wait(page, "([sel, n]) => document.querySelectorAll(sel).length > n", [fired, before])
    newest = page.text_content(fired) or ""
    assert f"DOL above {target:.1f} @" in newest, newest
    page.wait_for_selector("#alerts-list tr[data-symbol=DOL][data-state=fired]", timeout=WAIT_MS)
    assert page.text_content("#alert-error") == ""

    page.eval_on_selector("#alert-price", "n => n.removeAttribute('min')")
    page.fill("#alert-price", "-5")
    page.eval_on_selector("#alert-form", "f => f.requestSubmit()")
    _wait(page, "() => document.querySelector('#alert-error').textContent !== ''")
    assert "price" in (page.text_content("#alert-error") or "")  # the API names the field


def _check_keys_and_theme(page, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    page.focus("body")
    page.keyboard.press("Escape")
    page.keyboard.press("j")
    page.wait_for_selector("#watchlist tr[data-symbol=WDO][aria-selected=true]", timeout=WAIT_MS)
    assert page.text_content("#ladder-sym") == "WDO"
    assert page.evaluate("() => document.activeElement.dataset.symbol") == "WDO"  # visible focus
    page.keyboard.press("ArrowUp")
    page.wait_for_selector("#watchlist tr[data-symbol=DOL][aria-selected=true]", timeout=WAIT_MS)
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
            page.wait_for_selector("#ladder tr.poc", timeout=WAIT_MS)
            _rows_at_least(page, "#tape tbody tr", 20)
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
            shutil.copyfile(tmp_path / "dashboard.png", SHOT)
            assert errors == [], errors
        finally:
            browser.close()
