"""Alerts benchmark: an ingest replay with 0 and with 100,000 armed alerts, the engine checking
every message, side by side in one run against one private redis-server (never 6379).

    .venv/bin/python benchmarks/alerts.py [--trades N] [--alerts N]

Per scenario: `smarttrade ingest --synthetic` as a separate process (its trades/s), one alert
engine in this process hearing every trades message through a small pub/sub reader of its own
(the hub's interface), the engine's check round trips per commit, the fires, and how long after
the replay's end the engine had checked everything. Alerts are "far" (5-10% from the start
prices: few crossings, the check's own cost) or "near" (within 2%: many fire, one in twenty
re-arms). The no-alert replay runs first and last, to show the machine's noise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis

from smarttrade.feeds.synthetic import START_PRICES
from smarttrade.gateway.alerts import AlertEngine
from smarttrade.models import AlertRule, TradeMessage, decode
from smarttrade.redis.embedded import EmbeddedRedis
from smarttrade.redis.topology import Topology
from smarttrade.settings import Settings
from smarttrade.stores import Stores
from smarttrade.symbols import spec_for

SYMBOLS = ["DOL", "WDO", "WIN"]
NEAR = 0.02  # "near" alerts: within +-2% of each symbol's start price
FAR = (0.05, 0.10)  # "far" alerts: 5-10% away


class Reader:
    """The hub's three methods over one pub/sub connection; frames are counted, not sent."""

    def __init__(self, port: int) -> None:
        self.client = aioredis.Redis(port=port)
        self.pubsub = self.client.pubsub()
        self.listeners: list[Callable[[str, TradeMessage], Any]] = []
        self.channels: dict[str, Callable[[bytes], Any]] = {}
        self.frames = 0
        self.messages = 0
        self._task: asyncio.Task[None] | None = None

    def add_trade_listener(self, fn: Callable[[str, TradeMessage], Any]) -> None:
        self.listeners.append(fn)

    def add_channel(self, channel: str, fn: Callable[[bytes], Any]) -> None:
        self.channels[channel] = fn

    def send_to_user(self, user_id: str, frame: bytes) -> None:
        self.frames += 1

    async def start(self) -> None:
        await self.pubsub.psubscribe("trades:*")
        await self.pubsub.subscribe(*self.channels)
        for _ in range(1 + len(self.channels)):
            await self.pubsub.get_message(timeout=2)
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            m = await self.pubsub.get_message(timeout=1)
            if m is None:
                continue
            channel = m["channel"].decode()
            if m["type"] == "pmessage":
                self.messages += 1
                msg = decode(TradeMessage, m["data"], channel)
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


def rules(n: int, near: bool, seed: int = 5) -> dict[str, tuple[str, AlertRule]]:
    """``n`` users, one alert each, spread over the symbols. ``near``: within +-NEAR of each
    symbol's start price (the replay crosses many; one in twenty re-arms, every); else between
    FAR[0] and FAR[1] away, pointing away (the replay crosses none: the check's own cost)."""
    rnd = random.Random(seed)
    out = {}
    for i in range(n):
        sym = SYMBOLS[i % len(SYMBOLS)]
        start, tick = START_PRICES[sym], spec_for(sym).tick
        if near:
            ticks = int(start * Decimal(NEAR) / tick)
            move = rnd.randint(-ticks, ticks)
        else:
            lo, hi = (int(start * Decimal(f) / tick) for f in FAR)
            move = rnd.choice((-1, 1)) * rnd.randint(lo, hi)
        price = start + tick * move
        kind = "above" if price > start else "below"
        trigger = "every" if near and rnd.random() < 0.05 else "once"
        out[f"u{i}"] = (sym, AlertRule(price=float(price), type=kind, trigger=trigger))
    return out


async def place(stores: Stores, wanted: dict[str, tuple[str, AlertRule]]) -> float:
    started = time.perf_counter()
    items = list(wanted.items())
    for i in range(0, len(items), 500):
        await asyncio.gather(
            *(stores.configs.alerts.replace(user, {sym: rule}) for user, (sym, rule) in items[i : i + 500])
        )
    return time.perf_counter() - started


def replay(url: str, trades: int, workdir: Path) -> dict[str, Any]:
    exe = Path(sys.executable).parent / "smarttrade"
    cmd = [str(exe), "ingest", "--synthetic", "--count", str(trades), "--seed", "7", "--json"]
    cmd += ["--start-day", "2025-11-24", "--symbols", ",".join(SYMBOLS), "--reset", "--yes"]
    done = subprocess.run(
        cmd, env={**os.environ, "REDIS_URL": url}, cwd=workdir, capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        raise SystemExit(f"replay failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout)


async def scenario(
    server: EmbeddedRedis, trades: int, alerts: int, near: bool, workdir: Path
) -> dict[str, Any]:
    with redis.Redis(port=server.port) as r:
        r.flushall()  # our own private server
    settings = Settings(_env_file=None, redis_url=server.url)  # type: ignore[call-arg]
    pools = Topology.standalone(server.url, settings, 64)
    stores = Stores(pools, settings)
    placed_s = await place(stores, rules(alerts, near)) if alerts else 0.0
    reader = Reader(server.port)
    engine = AlertEngine(stores.configs.alerts, reader)
    await engine.start()
    await reader.start()
    with redis.Redis(port=server.port) as r:
        cpu_before = _redis_cpu(r)
    own_before = time.process_time()
    stats = await asyncio.to_thread(replay, server.url, trades, workdir)
    ended = time.perf_counter()
    await asyncio.sleep(0.2)  # the last messages in flight
    await engine.drain(600)
    behind_s = time.perf_counter() - ended - 0.2
    own_s = time.process_time() - own_before
    with redis.Redis(port=server.port) as r:
        redis_s = _redis_cpu(r) - cpu_before
    await asyncio.sleep(0.2)
    await engine.stop()
    await reader.stop()
    await pools.aclose()
    s = engine.stats
    checked = s.checked + s.stale
    return {
        "alerts": alerts,
        "where": ("near" if near else "far") if alerts else "-",
        "placed_per_s": alerts / placed_s if placed_s else None,
        "trades": trades,
        "commits": stats["commits"],
        "replay_trades_per_s": stats["trades"] / stats["elapsed_s"],
        "messages": reader.messages,
        "checked": s.checked,
        "skipped": s.skipped,
        "check_ms_per_message": 1000 * s.check_seconds / checked if checked else 0.0,
        "check_us_per_trade": 1e6 * s.check_seconds / trades if checked else 0.0,
        "fired": s.fired,
        "caught_up": s.caught_up,
        "seq_gaps": s.seq_gaps,
        "frames": reader.frames,
        "engine_done_after_replay_s": max(0.0, behind_s),
        "redis_cpu_us_per_trade": 1e6 * redis_s / trades,  # ingest commits and checks together
        "gateway_cpu_us_per_trade": 1e6 * own_s / trades,  # this process: reader and engine
    }


def _redis_cpu(r: redis.Redis) -> float:
    info = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| armed alerts | replay trades/s | commits | checked | check ms/commit | check µs/trade | fired "
        "| engine done after replay (s) | Redis CPU µs/trade | gateway CPU µs/trade |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['alerts']:,} {r['where']} | {r['replay_trades_per_s']:,.0f} | {r['commits']} | "
            f"{r['checked']:,} | "
            f"{r['check_ms_per_message']:.2f} | {r['check_us_per_trade']:.2f} | {r['fired']:,} | "
            f"{r['engine_done_after_replay_s']:.2f} | {r['redis_cpu_us_per_trade']:.2f} | "
            f"{r['gateway_cpu_us_per_trade']:.2f} |"
        )
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trades", type=int, default=1_000_000)
    parser.add_argument("--alerts", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-alerts-") as tmp:
        server = EmbeddedRedis(data_dir=Path(tmp) / "redis", config={"save": "", "appendonly": "no"})
        server.start()
        try:
            await scenario(server, args.trades // 4, 0, False, Path(tmp))  # warm-up, not reported
            rows = [
                await scenario(server, args.trades, n, near, Path(tmp))
                for n, near in ((0, False), (args.alerts, False), (args.alerts, True), (0, False))
            ]
        finally:
            server.stop(save=False)
    print(json.dumps(rows, indent=2))
    print(table(rows))


if __name__ == "__main__":
    asyncio.run(main())
