"""Alerts, monitor and the Prometheus exporter against real servers, plus ``evaluate`` on its own.

Every server here is one we started: the shared private test server (emptied and its statistics
reset per test) or a server of the test's own. The CLI runs as a subprocess, as cron would run it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from smarttrade.ingest.engine import IngestStats
from smarttrade.ingest.figures import publish_figures as publish_ingest
from smarttrade.keyspace import ALERTS_KEY, STORE_HITS_KEY
from smarttrade.ops.alerts import CHECKS, Check, Level, Previous, evaluate, memory_limit, worst
from smarttrade.ops.backup import list_backups, newest_age_s
from smarttrade.ops.metrics import METRIC_NAMES
from smarttrade.ops.sample import Rates, Sample, rates, take
from smarttrade.ops.server import Admin
from smarttrade.ops.watch import Watcher
from smarttrade.redis.embedded import EmbeddedRedis, free_port
from smarttrade.settings import Settings
from tests.conftest import run_smarttrade, settings_for, start_server

T = TypeVar("T")
MiB = 2**20
SOURCE = "feed-a"
PUBLISHED = IngestStats(trades=1234, commits=56, last_batch=42, max_batch=77, lag_ms=12.5)
QUOTES_HITS, QUOTES_MISSES = 75, 25


# -- helpers ---------------------------------------------------------------------------------------


def backup_name(age: timedelta) -> str:
    stamp = (datetime.now(UTC) - age).strftime("%Y%m%dT%H%M%S%fZ")
    return f"smarttrade-{stamp}.rdb"


def fake_backup(folder: Path, age: timedelta = timedelta(0)) -> Path:
    """A file named like a backup: its age comes from the name, not from the file's mtime."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / backup_name(age)
    path.write_bytes(b"REDIS0009")
    return path


def env_for(url: str, backup_dir: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "REDIS_URL": url,
        "COLUMNS": "200",
        "SMARTTRADE_DATA_DIR": str(backup_dir.parent / "data"),
        "SMARTTRADE_BACKUP_DIR": str(backup_dir),
        **extra,
    }


class AlertRun:
    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        self.proc = proc
        assert "Traceback" not in proc.stderr, proc.stderr
        assert proc.returncode in (0, 1, 2), (proc.returncode, proc.stdout, proc.stderr)
        try:
            self.report: dict[str, Any] = json.loads(proc.stdout)
        except json.JSONDecodeError:
            raise AssertionError(f"not JSON: {proc.stdout!r} {proc.stderr!r}") from None
        self.checks = {c["check"]: c for c in self.report["checks"]}
        self.levels = {name: c["level"] for name, c in self.checks.items()}

    @property
    def code(self) -> int:
        return self.proc.returncode

    def __repr__(self) -> str:
        return json.dumps(self.report, indent=1)


def alerts_json(env: dict[str, str], interval: float = 0.2) -> AlertRun:
    run = AlertRun(run_smarttrade("alerts", "--json", "--interval", str(interval), env=env, timeout=60))
    assert list(run.checks) == list(CHECKS), run
    assert run.report["exit_code"] == run.code, run
    assert run.report["status"] == Level(run.code).label, run
    return run


def only(run: AlertRun, **expected: str) -> None:
    """Exactly the named checks at the given levels; every other check ok."""
    want = {name: expected.get(name, "ok") for name in CHECKS}
    assert run.levels == want, run


def parallel(*calls: Callable[[], T]) -> list[T]:
    """Independent CLI runs at once (each spends most of its time starting Python)."""
    with ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(c) for c in calls]
        return [f.result() for f in futures]


def info(port: int) -> dict[str, Any]:
    with redis.Redis(port=port) as client:
        return client.info()


def wait_clients_at_most(port: int, n: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while info(port)["connected_clients"] > n:
        assert time.monotonic() < deadline, "the server still counts clients we closed"
        time.sleep(0.02)


def fill(client: redis.Redis, ttl: int | None, until: Callable[[], bool], max_batches: int = 400) -> int:
    """SET 1 KB values, 50 per round trip, until ``until()`` or the server refuses (OOM)."""
    value = b"x" * 1000
    n = 0
    for _ in range(max_batches):  # at most 20 MB: bounded whatever the server does
        pipe = client.pipeline(transaction=False)
        for _ in range(50):
            pipe.set(f"fill:{n}", value, ex=ttl)
            n += 1
        try:
            pipe.execute()
        except redis.ResponseError as exc:
            if "OOM" not in str(exc):
                raise
            return n
        if until():
            return n
    return n


async def _publish(url: str) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        await publish_ingest(client, SOURCE, PUBLISHED)
        await client.hincrby(STORE_HITS_KEY, "quotes:hits", QUOTES_HITS)
        await client.hincrby(STORE_HITS_KEY, "quotes:misses", QUOTES_MISSES)
    finally:
        await client.aclose()


def publish_figures(url: str) -> None:
    asyncio.run(_publish(url))


@contextmanager
def raw_clients(port: int, count: int) -> Iterator[list[socket.socket]]:
    """``count`` plain TCP clients, each having said PING (so the server surely registered it)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            socks.append(s)
            s.sendall(b"PING\r\n")
        for s in socks:
            assert s.recv(64).startswith(b"+PONG")
        yield socks
    finally:
        for s in socks:
            s.close()


@pytest.fixture(scope="module")
def module_server(tmp_path_factory: pytest.TempPathFactory, binary: str) -> Iterator[EmbeddedRedis]:
    """A server of this module's own: client counts here must not see other modules' connections."""
    own = start_server(tmp_path_factory.mktemp("alerts-redis"), binary)
    yield own
    own.stop(save=False)


@pytest.fixture
def srv(module_server: EmbeddedRedis) -> EmbeddedRedis:
    """This module's server, empty, with its counters (hits, misses, commands, evictions) reset."""
    with redis.Redis(port=module_server.port) as client:
        client.flushall()  # ours: started above
        client.config_resetstat()
    wait_clients_at_most(module_server.port, 1)
    return module_server


# -- 1. healthy ------------------------------------------------------------------------------------


def test_healthy_server_is_ok_and_a_missing_backup_is_a_warning(srv: EmbeddedRedis, tmp_path: Path) -> None:
    backups = tmp_path / "backups"
    made = run_smarttrade("backup", env=env_for(srv.url, backups), timeout=60)
    assert made.returncode == 0, made.stderr
    assert len(list_backups(backups)) == 1

    ok, missing = parallel(
        lambda: alerts_json(env_for(srv.url, backups)),
        lambda: alerts_json(env_for(srv.url, tmp_path / "nothing-here")),
    )
    assert ok.code == 0 and ok.report["status"] == "ok", ok
    only(ok)
    assert ok.checks["backup"]["value"].endswith(" h"), ok

    assert missing.code == 1 and missing.report["status"] == "warning", missing
    only(missing, backup="warning")
    assert missing.checks["backup"]["value"] == "none"
    assert "smarttrade backup" in missing.checks["backup"]["message"]


# -- 2. memory and evictions -----------------------------------------------------------------------


def test_memory_critical_evictions_and_a_size_threshold(
    srv: EmbeddedRedis, binary: str, tmp_path: Path
) -> None:
    backups = tmp_path / "backups"
    fake_backup(backups)
    full = start_server(tmp_path / "full", binary, maxmemory="4mb", **{"maxmemory-policy": "volatile-lru"})
    evicting = start_server(
        tmp_path / "evict", binary, maxmemory="4mb", **{"maxmemory-policy": "volatile-lru"}
    )
    try:
        # No TTLs under volatile-lru: nothing can be evicted, memory fills until writes are refused.
        with redis.Redis(port=full.port) as c:
            maxmemory = int(c.info("memory")["maxmemory"])
            assert maxmemory == 4 * MiB
            fill(c, None, lambda: int(c.info("memory")["used_memory"]) > 0.95 * maxmemory)
            assert int(c.info("memory")["used_memory"]) > 0.9 * maxmemory
        # TTLs: keys are evicted to make room. 8 MB into 4 MB.
        with redis.Redis(port=evicting.port) as c:
            fill(c, 3600, lambda: False, max_batches=160)
            c.flushall()  # memory is fine again; the evictions stay in the counter
            evicted = int(c.info("stats")["evicted_keys"])  # after: eviction may go on in the background
            assert evicted > 0
        # A little data on the shared server (maxmemory 512mb), over a 1mb warning level.
        with redis.Redis(port=srv.port) as c:
            fill(c, 3600, lambda: int(c.info("memory")["used_memory"]) > 1.5 * MiB, max_batches=100)
            assert int(c.info("memory")["used_memory"]) > 1.5 * MiB

        oom, evictions, sized = parallel(
            lambda: alerts_json(env_for(full.url, backups)),
            lambda: alerts_json(env_for(evicting.url, backups)),
            lambda: alerts_json(env_for(srv.url, backups, SMARTTRADE_ALERT_MEMORY_WARN="1mb")),
        )
        assert oom.code == 2, oom
        only(oom, memory="critical")
        assert "of 4.0 MiB maxmemory" in oom.checks["memory"]["value"]
        assert "crit 3.6 MiB" in oom.checks["memory"]["message"]

        assert evictions.code == 1, evictions
        only(evictions, evictions="warning")
        assert evictions.checks["evictions"]["value"] == f"{evicted:,}"
        assert "since the server started" in evictions.checks["evictions"]["message"]
        assert "volatile-lru" in evictions.checks["evictions"]["message"]

        assert sized.code == 1, sized
        only(sized, memory="warning")
        assert "warn 1.0 MiB" in sized.checks["memory"]["message"]

        # The next check judges what happened since this one: no new evictions, all ok.
        again = alerts_json(env_for(evicting.url, backups))
        assert again.code == 0, again
        only(again)
        assert again.checks["evictions"]["message"] == "no keys evicted since the last check"
    finally:
        full.stop(save=False)
        evicting.stop(save=False)


async def test_evicting_between_the_two_samples_is_critical(binary: str, tmp_path: Path) -> None:
    """Keys evicted between two readings (what `alerts` and the exporter compare): critical."""
    evicting = start_server(
        tmp_path / "evict", binary, maxmemory="4mb", **{"maxmemory-policy": "volatile-lru"}
    )
    client = aioredis.Redis.from_url(evicting.url)
    try:
        settings = settings_for(evicting.url)
        admin = Admin(client, settings, evicting.url)
        with redis.Redis(port=evicting.port) as c:
            fill(c, 3600, lambda: False, max_batches=100)  # 5 MB into 4 MB: memory is full
            first = await take(admin)
            fill(c, 3600, lambda: False, max_batches=20)  # and more: each write evicts
        second = await take(admin)
        window = rates(first, second)
        assert window is not None and window.evicted > 0
        prev = Previous(first.run_id, first.hits, first.misses, first.evicted)
        checks = {c.name: c for c in evaluate(settings, second, window, prev, 60.0)}
        assert checks["evictions"].level is Level.CRITICAL
        assert f"{window.evicted:,} keys" in checks["evictions"].message
        assert checks["memory"].level is Level.CRITICAL  # 90% of 4mb
    finally:
        await client.aclose()
        evicting.stop(save=False)


# -- 3. clients ------------------------------------------------------------------------------------


def test_many_clients_warn_then_critical(srv: EmbeddedRedis, tmp_path: Path) -> None:
    backups = tmp_path / "backups"
    fake_backup(backups)
    env = env_for(srv.url, backups)
    with raw_clients(srv.port, 60) as socks:
        warn = alerts_json(env)
        assert warn.code == 1, warn
        only(warn, connections="warning")
        assert 60 < int(warn.checks["connections"]["value"]) <= 100, warn
        with raw_clients(srv.port, 45) as more:
            assert len(socks) + len(more) == 105
            crit = alerts_json(env)
    wait_clients_at_most(srv.port, 1)
    assert crit.code == 2, crit
    only(crit, connections="critical")
    assert int(crit.checks["connections"]["value"]) > 105, crit
    assert "smarttrade info clients" in crit.checks["connections"]["message"]


# -- 4. hit rate -----------------------------------------------------------------------------------


def test_low_hit_rate_is_critical_and_the_next_check_judges_only_what_came_after(
    srv: EmbeddedRedis, tmp_path: Path
) -> None:
    backups = tmp_path / "backups"
    fake_backup(backups)
    env = env_for(srv.url, backups)
    with redis.Redis(port=srv.port) as c:
        c.mset({f"quote:HIT:{i}": "1" for i in range(10)})
        pipe = c.pipeline(transaction=False)
        for i in range(300):
            pipe.get(f"quote:MISSING:{i}")
        for i in range(10):
            pipe.get(f"quote:HIT:{i}")
        pipe.execute()

        bad = alerts_json(env)
        assert bad.code == 2, bad
        only(bad, hit_rate="critical")
        assert "since the server started" in bad.checks["hit_rate"]["message"]
        assert float(bad.checks["hit_rate"]["value"].rstrip("%")) < 5.0, bad

        # The check left what it saw in ops:alerts (db 0), for the next one.
        state = {k.decode(): v.decode() for k, v in c.hgetall(ALERTS_KEY).items()}
        stats = c.info()
        assert state["run_id"] == stats["run_id"]
        assert int(state["misses"]) >= 300 and int(state["hits"]) >= 10
        assert c.ttl(ALERTS_KEY) > 0

        pipe = c.pipeline(transaction=False)
        for i in range(400):
            pipe.get(f"quote:HIT:{i % 10}")
        pipe.execute()

    good = alerts_json(env)
    assert good.code == 0, good
    only(good)
    message = good.checks["hit_rate"]["message"]
    assert "since the last check" in message, good
    # 400 hits, and the few misses of our own start-up reads (instrument registry, script calls)
    assert float(good.checks["hit_rate"]["value"].rstrip("%")) >= 98.5, good
    lookups = int(re.search(r"of ([\d,]+) lookups", message)[1].replace(",", ""))  # type: ignore[index]
    assert 400 <= lookups < 410, good  # not the 310 lookups the first check judged


# -- 5. ops/s --------------------------------------------------------------------------------------


def test_ops_per_second_over_the_warning_level(srv: EmbeddedRedis, tmp_path: Path) -> None:
    backups = tmp_path / "backups"
    fake_backup(backups)
    stop = threading.Event()
    sent = [0]

    def pinger() -> None:
        deadline = time.monotonic() + 30  # bounded, whatever happens to the test
        with redis.Redis(port=srv.port) as c:
            while not stop.is_set() and time.monotonic() < deadline:
                c.ping()
                sent[0] += 1
                time.sleep(0.002)  # a few hundred a second: well over 50, no busy loop

    thread = threading.Thread(target=pinger, daemon=True)
    thread.start()
    try:
        run = alerts_json(env_for(srv.url, backups, SMARTTRADE_ALERT_OPS_WARN="50"), interval=1.0)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert sent[0] > 100
    assert run.code == 1, run
    only(run, ops="warning")
    assert int(run.checks["ops"]["value"].removesuffix("/s").replace(",", "")) > 50, run
    assert "warn > 50," in run.checks["ops"]["message"]


# -- 6. backup age ---------------------------------------------------------------------------------


def test_stale_backups_warn_then_critical_by_the_time_in_their_name(
    srv: EmbeddedRedis, tmp_path: Path
) -> None:
    day, two_days = tmp_path / "30h", tmp_path / "60h"
    fake_backup(day, timedelta(hours=30))
    fake_backup(two_days, timedelta(hours=60))
    warn, crit = parallel(
        lambda: alerts_json(env_for(srv.url, day)),
        lambda: alerts_json(env_for(srv.url, two_days)),
    )
    assert warn.code == 1, warn
    only(warn, backup="warning")
    assert warn.checks["backup"]["value"] == "30.0 h"
    assert crit.code == 2, crit
    only(crit, backup="critical")
    assert crit.checks["backup"]["value"] == "60.0 h"


def test_backup_age_comes_from_the_newest_name(tmp_path: Path) -> None:
    assert newest_age_s(tmp_path / "absent") is None
    old = fake_backup(tmp_path, timedelta(hours=60))
    os.utime(old, (0, 0))  # the mtime says 1970: ignored
    newest = fake_backup(tmp_path, timedelta(hours=30))
    (tmp_path / "dump.rdb").write_bytes(b"x")
    (tmp_path / f"{backup_name(timedelta(0))}.part").write_bytes(b"x")  # a copy in progress
    (tmp_path / (newest.name + ".sha256")).write_text("0" * 64)
    found = list_backups(tmp_path)
    assert [b.path for b in found] == [old, newest]
    age = newest_age_s(tmp_path)
    assert age is not None and abs(age - 30 * 3600) < 60


def test_a_backup_name_that_is_not_a_date_is_ignored(tmp_path: Path) -> None:
    good = fake_backup(tmp_path, timedelta(hours=1))
    (tmp_path / "smarttrade-20260230T120000000000Z.rdb").write_bytes(b"x")  # 30 February
    assert [b.path for b in list_backups(tmp_path)] == [good]


# -- 7. bad thresholds -----------------------------------------------------------------------------


def test_bad_thresholds_stop_with_one_line_naming_the_variable(tmp_path: Path) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}"  # never reached: the settings fail first
    bad = {
        "SMARTTRADE_ALERT_MEMORY_CRIT": "lots",
        "SMARTTRADE_ALERT_MEMORY_WARN": "101%",
        "SMARTTRADE_ALERT_HIT_RATE_WARN": "1.5",
    }

    def alerts_with(name: str, value: str) -> subprocess.CompletedProcess[str]:
        return run_smarttrade("alerts", "--json", env=env_for(nowhere, tmp_path / "b", **{name: value}))

    results = parallel(*(partial(alerts_with, name, value) for name, value in bad.items()))
    for (name, value), proc in zip(bad.items(), results, strict=True):
        assert proc.returncode == 2, (name, proc.stdout, proc.stderr)
        assert proc.stdout == "", (name, proc.stdout)
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1, (name, proc.stderr)
        assert name in lines[0] and value in lines[0], (name, lines)
        assert "Traceback" not in proc.stderr


# -- 8. monitor ------------------------------------------------------------------------------------


def test_monitor_shows_memory_stores_ingest_and_alerts(srv: EmbeddedRedis, tmp_path: Path) -> None:
    backups = tmp_path / "backups"
    fake_backup(backups)
    with redis.Redis(port=srv.port) as c:
        c.mset({f"quote:ES:{i}": "1" for i in range(20)})
    publish_figures(srv.url)
    env = env_for(srv.url, backups)
    once, timed = parallel(
        lambda: run_smarttrade("monitor", "--once", "--interval", "0.5", env=env, timeout=60),
        lambda: run_smarttrade("monitor", "--duration", "1.5", "--interval", "0.5", env=env, timeout=60),
    )
    assert once.returncode == 0, once.stderr
    assert "Traceback" not in once.stderr
    lines = once.stdout.splitlines()

    def row(first: str) -> list[str]:
        for line in lines:
            cells = [c.strip() for c in re.split(r"[│┃|]", line) if c.strip()]
            if cells and cells[0] == first:
                return cells
        raise AssertionError(f"no row {first!r} in:\n{once.stdout}")

    memory = next((ln for ln in lines if ln.startswith("memory")), "")
    assert "of 512.0 MiB" in memory and "volatile-lru" in memory, once.stdout
    assert any(ln.startswith("keys") and "db0 22" in ln for ln in lines), once.stdout  # 20 + 2 ops keys
    assert "per-store hit rate" in once.stdout
    assert row("quotes") == ["quotes", "75", "25", "75.0%", "n/a"]
    assert row(SOURCE)[:6] == [SOURCE, "12.5", "42", "77", "1,234", "56"]
    for name in CHECKS:
        assert row(name)[1] == "ok", once.stdout
    assert timed.returncode == 0, timed.stderr
    assert "Traceback" not in timed.stderr


# -- 9. exporter -----------------------------------------------------------------------------------


def scrape(url: str, timeout: float = 30) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        assert resp.status == 200
        text = resp.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def values(family: Any, label: str) -> dict[str, float]:
    return {s.labels[label]: s.value for s in family.samples if label in s.labels}


def test_exporter_serves_our_metrics_and_survives_redis_going_away(binary: str, tmp_path: Path) -> None:
    backups = tmp_path / "backups"
    made = fake_backup(backups, timedelta(hours=2))
    own = start_server(tmp_path / "redis", binary)
    port = free_port()
    exe = shutil.which("smarttrade", path=str(Path(sys.executable).parent))
    cmd = [exe] if exe else [sys.executable, "-m", "smarttrade"]
    log_out, log_err = tmp_path / "out.txt", tmp_path / "err.txt"
    proc: subprocess.Popen[bytes] | None = None
    try:
        with redis.Redis(port=own.port) as c:
            c.mset({f"quote:ES:{i}": "1" for i in range(5)})
            c.select(1)
            c.mset({f"orderflow:ES:{i}": "1" for i in range(3)})
        publish_figures(own.url)
        with log_out.open("wb") as fo, log_err.open("wb") as fe:
            proc = subprocess.Popen(
                [*cmd, "exporter", "--port", str(port), "--bind", "127.0.0.1", "--duration", "60"],
                env=env_for(own.url, backups),
                cwd=tmp_path,
                stdout=fo,
                stderr=fe,
            )
        url = f"http://127.0.0.1:{port}/metrics"
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log_err.read_text()
            try:
                fams = scrape(url)
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "the exporter never answered"
                time.sleep(0.2)

        for fam in fams.values():
            name = fam.name + "_total" if fam.type == "counter" else fam.name
            assert name in METRIC_NAMES, name
            for s in fam.samples:
                assert s.name in (fam.name, fam.name + "_total"), s.name
        assert fams["redis_up"].samples[0].value == 1
        with redis.Redis(port=own.port) as c:
            db0 = c.dbsize()
        assert values(fams["redis_db_keys"], "db") == {"db0": db0, "db1": 3}
        assert db0 == 5 + 2  # our quotes, ops:storehits, ops:ingest:SOURCE
        assert values(fams["smarttrade_store_hits"], "store")["quotes"] == QUOTES_HITS
        assert values(fams["smarttrade_store_misses"], "store")["quotes"] == QUOTES_MISSES
        assert values(fams["smarttrade_store_hit_ratio"], "store")["quotes"] == pytest.approx(0.75)
        assert values(fams["smarttrade_ingest_batch_size"], "source") == {SOURCE: 42}
        assert values(fams["smarttrade_ingest_max_batch_size"], "source") == {SOURCE: 77}
        assert values(fams["smarttrade_ingest_lag_seconds"], "source") == {SOURCE: pytest.approx(0.0125)}
        assert values(fams["smarttrade_ingest_trades"], "source") == {SOURCE: 1234}
        state = values(fams["smarttrade_alert_state"], "check")
        assert set(state) == set(CHECKS)
        assert all(v == 0 for v in state.values()), state
        created = list_backups(backups)[-1].created.timestamp()
        assert list_backups(backups)[-1].path == made
        last = fams["smarttrade_last_backup_timestamp_seconds"].samples[0].value
        assert abs(last - created) < 5

        own.stop(save=False)
        down = scrape(url)
        assert down["redis_up"].samples[0].value == 0
        assert "redis_db_keys" not in down
        assert proc.poll() is None

        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        assert code in (0, 130), (code, log_err.read_text())
        assert "Traceback" not in log_err.read_text()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        own.stop(save=False)


async def test_watcher_counts_alerts_as_they_rise(srv: EmbeddedRedis, tmp_path: Path) -> None:
    """The exporter's smarttrade_alerts_fired_total: one per rise, not one per poll."""
    settings = settings_for(srv.url, smarttrade_backup_dir=tmp_path / "b", smarttrade_alert_clients_warn=3)
    client = aioredis.Redis.from_url(srv.url)
    try:
        watcher = Watcher(Admin(client, settings, srv.url), settings)
        first = await watcher.poll()
        assert first.rates is None
        assert {c.name: c.level for c in first.checks}["connections"] is Level.OK
        with raw_clients(srv.port, 5):
            for _ in range(2):
                obs = await watcher.poll()
                assert {c.name: c.level for c in obs.checks}["connections"] is Level.WARNING
        assert watcher.fired[("connections", "warning")] == 1
        assert watcher.fired[("backup", "warning")] == 1
        assert obs.rates is not None
    finally:
        await client.aclose()
    wait_clients_at_most(srv.port, 1)


# -- 10. evaluate on its own -----------------------------------------------------------------------


def sample(**kw: Any) -> Sample:
    base: dict[str, Any] = {
        "at": 100.0,
        "run_id": "run-1",
        "uptime_s": 60,
        "used_memory": 1 * MiB,
        "maxmemory": 0,
        "maxmemory_policy": "volatile-lru",
        "frag_ratio": 1.0,
        "allocator_frag_ratio": 1.0,
        "clients": 1,
        "blocked_clients": 0,
        "hits": 0,
        "misses": 0,
        "commands": 0,
        "ops_per_sec": 0,
        "evicted": 0,
        "expired": 0,
        "rdb_last_save": 0,
        "rdb_changes": 0,
        "rdb_bgsave_ok": True,
    }
    return Sample(**{**base, **kw})


def window(**kw: Any) -> Rates:
    base: dict[str, Any] = {
        "seconds": 1.0,
        "ops_s": 0.0,
        "evicted_s": 0.0,
        "expired_s": 0.0,
        "evicted": 0,
        "hits": 0,
        "misses": 0,
    }
    return Rates(**{**base, **kw})


@pytest.fixture
def plain() -> Settings:
    return Settings(_env_file=None)  # type: ignore[call-arg]


def one(
    settings: Settings,
    name: str,
    cur: Sample,
    r: Rates | None = None,
    prev: Previous | None = None,
    age: float | None = 3600.0,
) -> Check:
    return {c.name: c for c in evaluate(settings, cur, r, prev, age)}[name]


def test_evaluate_defaults_all_ok(plain: Settings) -> None:
    checks = evaluate(plain, sample(), window(), None, 3600.0)
    assert [c.name for c in checks] == list(CHECKS)
    assert all(c.level is Level.OK for c in checks), checks
    assert worst(checks) is Level.OK
    assert worst([]) is Level.OK
    assert checks[0].as_json()["level"] == "ok"


def test_memory_edges(plain: Settings) -> None:
    maxmemory = 1000 * MiB
    crit = maxmemory * 90 // 100
    warn = 400 * MiB
    assert memory_limit("90%", maxmemory) == crit
    assert memory_limit("90%", 0) is None
    assert (
        memory_limit("1kb", 0) == 1024 and memory_limit("1k", 0) == 1000 and memory_limit("2MB", 5) == 2 * MiB
    )

    def level(used: int, mx: int = maxmemory, s: Settings = plain) -> Level:
        return one(s, "memory", sample(used_memory=used, maxmemory=mx)).level

    assert level(warn) is Level.OK  # at the limit is not past it
    assert level(warn + 1) is Level.WARNING
    assert level(crit) is Level.WARNING
    assert level(crit + 1) is Level.CRITICAL
    # No maxmemory: the 90% level does not exist; the 400mb one still does.
    assert level(10 * 1024 * MiB, 0) is Level.WARNING
    pct = Settings(_env_file=None, smarttrade_alert_memory_warn="50%")  # type: ignore[call-arg]
    assert level(10 * 1024 * MiB, 0, pct) is Level.OK
    assert "no maxmemory set" in one(pct, "memory", sample(used_memory=5 * MiB)).value
    assert level(maxmemory // 2, s=pct) is Level.OK and level(maxmemory // 2 + 1, s=pct) is Level.WARNING


def test_connection_ops_and_backup_edges(plain: Settings) -> None:
    def conn(n: int) -> Level:
        return one(plain, "connections", sample(clients=n)).level

    assert [conn(50), conn(51), conn(100), conn(101)] == [
        Level.OK,
        Level.WARNING,
        Level.WARNING,
        Level.CRITICAL,
    ]

    def ops(rate: float) -> Level:
        return one(plain, "ops", sample(), window(ops_s=rate)).level

    assert [ops(1000), ops(1000.5), ops(50_000), ops(50_000.5)] == [
        Level.OK,
        Level.WARNING,
        Level.WARNING,
        Level.CRITICAL,
    ]
    # Without a window (one sample), the server's own instantaneous figure.
    assert one(plain, "ops", sample(ops_per_sec=1001), None).level is Level.WARNING

    def backup(hours: float | None) -> Level:
        return one(plain, "backup", sample(), age=None if hours is None else hours * 3600).level

    assert backup(None) is Level.WARNING
    assert [backup(26), backup(26.01), backup(50), backup(50.01)] == [
        Level.OK,
        Level.WARNING,
        Level.WARNING,
        Level.CRITICAL,
    ]


def test_hit_rate_edges_and_the_window(plain: Settings) -> None:
    def hit(hits: int, misses: int, prev: Previous | None = None) -> Check:
        return one(plain, "hit_rate", sample(hits=hits, misses=misses), prev=prev)

    assert hit(0, 99).level is Level.OK and hit(0, 99).value == "n/a"  # too few to judge
    assert hit(80, 20).level is Level.OK  # exactly 80% is not below 80%
    assert hit(79, 21).level is Level.WARNING
    assert hit(50, 50).level is Level.WARNING  # exactly 50% is not below 50%
    assert hit(49, 51).level is Level.CRITICAL
    # Since the last check: 1000 misses before it, 200 hits after it.
    prev = Previous("run-1", 0, 1000, 0)
    after = hit(200, 1000, prev)
    assert after.level is Level.OK and after.value == "100.0%" and "since the last check" in after.message
    assert hit(200, 1000).level is Level.CRITICAL  # without the state: since the server started
    # Another server run (restart) or counters reset: judged since the server started.
    assert "since the server started" in hit(200, 1000, Previous("run-0", 0, 1000, 0)).message
    assert "since the server started" in hit(200, 1000, Previous("run-1", 500, 0, 0)).message


def test_eviction_levels(plain: Settings) -> None:
    def ev(cur: int, r: Rates | None, prev: Previous | None) -> Check:
        return one(plain, "evictions", sample(evicted=cur), r, prev)

    assert ev(0, window(), None).level is Level.OK
    assert ev(7, window(evicted=3, evicted_s=3.0), None).level is Level.CRITICAL
    since_start = ev(7, window(), None)
    assert since_start.level is Level.WARNING and since_start.value == "7"
    assert ev(7, window(), Previous("run-1", 0, 0, 7)).level is Level.OK
    since_last = ev(9, window(), Previous("run-1", 0, 0, 7))
    assert since_last.level is Level.WARNING and since_last.value == "2"
    assert ev(7, None, Previous("run-0", 0, 0, 7)).value == "7"  # another run: since it started


def test_a_restart_between_the_samples_gives_no_rates_and_no_crash(plain: Settings) -> None:
    before = sample(run_id="old", at=10.0, commands=10_000_000, evicted=50, hits=10, misses=10)
    after = sample(run_id="new", at=11.0, commands=5, evicted=0, hits=300, misses=0, ops_per_sec=3)
    assert rates(before, after) is None
    assert rates(after, sample(run_id="new", at=11.0)) is None  # no time passed
    prev = Previous("old", 10, 10, 50)
    checks = {c.name: c for c in evaluate(plain, after, rates(before, after), prev, None)}
    assert checks["ops"].value == "3/s"
    assert checks["evictions"].level is Level.OK and "since the server started" in checks["evictions"].message
    assert checks["hit_rate"].value == "100.0%"
    # Counters that went backwards in one run (CONFIG RESETSTAT) clamp to zero.
    reset = rates(sample(at=1.0, commands=100, evicted=5), sample(at=2.0, commands=10, evicted=0))
    assert reset is not None and reset.ops_s == 0 and reset.evicted == 0
    assert Level.CRITICAL.label == "critical"


# -- ops/s counts what clients send ----------------------------------------------------------------

LOOP_1000 = "for i = 1, 1000 do redis.call('SET', KEYS[1], i) end return 1"


def test_info_counts_every_command_a_script_runs(srv: EmbeddedRedis) -> None:
    """Why ops/s cannot be INFO's own counter: on 6.2 and 7.x alike, total_commands_processed and
    commandstats both count the 1,000 SETs inside each EVALSHA (checked on both binaries)."""
    with redis.Redis(port=srv.port) as c:
        sha = c.script_load(LOOP_1000)
        before = c.info("stats")["total_commands_processed"]
        for _ in range(5):
            c.evalsha(sha, 1, "loop")
        after = c.info("stats")["total_commands_processed"]
        stats = c.info("commandstats")
    assert after - before >= 5_000
    assert stats["cmdstat_evalsha"]["calls"] == 5 and stats["cmdstat_set"]["calls"] == 5_000


async def test_an_evalsha_counts_once_in_the_ops_rate(srv: EmbeddedRedis) -> None:
    from smarttrade.redis.scripts import counted

    settings = settings_for(srv.url)
    client = aioredis.Redis.from_url(srv.url)
    try:
        admin = Admin(client, settings, srv.url)
        sha = await client.script_load(counted(LOOP_1000))
        first = await take(admin)
        for _ in range(20):
            await client.evalsha(sha, 1, "loop")
        window = rates(first, await take(admin))
    finally:
        await client.aclose()
    assert window is not None
    assert window.commands_s * window.seconds >= 20_000  # what Redis ran
    assert 20 <= window.ops_s * window.seconds < 40  # what we sent: 20 EVALSHA, HGETALL, INFO


@pytest.mark.one_binary
async def test_a_demo_rate_ingest_does_not_warn_a_busy_client_does(
    srv: EmbeddedRedis, tmp_path: Path
) -> None:
    """The demo's 150 trades/s ran ~2,300 commands/s inside the commit scripts: ops warned
    during any ingest. Client commands are what the runbook's 1,000/s means."""
    from smarttrade.feeds.synthetic import LiveSyntheticFeed
    from smarttrade.ingest.run import ChunkFeed, run_feed
    from smarttrade.redis.topology import Topology

    backups = tmp_path / "backups"
    fake_backup(backups)
    env = env_for(srv.url, backups)
    settings = settings_for(srv.url)
    pools = Topology.standalone(srv.url, settings, 8)
    live = LiveSyntheticFeed(["DOL", "WDO", "WIN"], rate=50)  # the demo's 150 trades/s
    ingest = asyncio.create_task(
        run_feed(pools, settings, ChunkFeed(live.chunks, "ops-test", live=True), None, duration=5)
    )
    try:
        await asyncio.sleep(1.0)  # under way
        calm = await asyncio.to_thread(alerts_json, env, 2.0)
        result = await ingest
    finally:
        ingest.cancel()
        await pools.aclose()
    assert result.stats.trades > 200
    assert calm.levels["ops"] == "ok", calm
    scripts = int(info(srv.port)["total_commands_processed"])
    assert scripts > 20 * result.stats.commits  # the scripts did run many commands each

    stop = threading.Event()

    def busy() -> None:
        deadline = time.monotonic() + 30  # bounded, whatever happens to the test
        with redis.Redis(port=srv.port) as c:
            while not stop.is_set() and time.monotonic() < deadline:
                c.get("some:key")  # a few thousand a second: one round trip each

    thread = threading.Thread(target=busy, daemon=True)
    thread.start()
    try:
        loud = alerts_json(env, interval=1.0)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert loud.levels["ops"] == "warning", loud
