"""Ingest benchmark: ours vs the seed-style path vs redis-benchmark, side by side on one server.

    make bench            (or: .venv/bin/python benchmarks/ingest.py [--trades N])

Measured in one run against one private redis-server (never 6379):
  1. ours, replay: `smarttrade ingest --synthetic --count N` as a separate process, all stores
     written, trades/s until the last commit is acknowledged, and its peak RSS;
  2. ours, live path: trades handed one at a time to LiveIngest.submit, trades/s;
  3. the seed-style path: per trade SETEX the quote, GET/SET the order-flow bucket JSON and the
     footprint level JSON, one round trip each, as the runbook's redis-cli/ioredis examples do;
  4. redis-benchmark -P 64 -t set: the physical reference of this server on this machine, run
     before the replays and at the end (the ratios divide by the mean of the two);
  5. latency from a trade accepted by LiveIngest to its pub/sub message received, at 5,000 trades/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import redis
import redis.asyncio as aioredis

from smarttrade.feeds.record import TradeRecord
from smarttrade.feeds.synthetic import SyntheticFeed
from smarttrade.ingest.engine import Engine
from smarttrade.ingest.live import LiveIngest
from smarttrade.keyspace import Store
from smarttrade.redis.embedded import EmbeddedRedis, find_redis_binary
from smarttrade.settings import Settings

SYMBOLS = ["DOL", "WDO", "WIN"]
DAY = date(2025, 11, 24)
TARGETS = {"replay": 300_000, "ratio_seed": 200, "live": 100_000, "p99_ms": 5.0, "rss_mb": 300}


def flush(url: str) -> None:
    with redis.Redis.from_url(url) as r:
        r.flushall()  # our own private server


def replay(url: str, trades: int, workdir: Path, env_extra: dict[str, str] | None = None) -> dict:
    exe = Path(sys.executable).parent / "smarttrade"
    cmd = [str(exe), "ingest", "--synthetic", "--count", str(trades), "--seed", "7"]
    cmd += ["--start-day", DAY.isoformat(), "--symbols", ",".join(SYMBOLS), "--json", "--reset", "--yes"]
    env = {**os.environ, "REDIS_URL": url, **(env_extra or {})}
    with redis.Redis.from_url(url) as r:
        r.config_resetstat()
        cpu_before = _redis_cpu(r)
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    assert proc.stdout is not None
    stats = json.loads(proc.stdout.read())
    proc.stdout.close()
    if status != 0 or stats["trades"] != trades:
        raise SystemExit(f"replay failed: status {status}, {stats.get('trades')} trades")
    with redis.Redis.from_url(url) as r:
        cpu_s = _redis_cpu(r) - cpu_before
        commandstats = r.info("commandstats")
    top = sorted(commandstats.items(), key=lambda kv: -kv[1]["usec"])[:8]
    return {
        "redis_cpu_us_per_trade": cpu_s * 1e6 / trades,
        "commandstats_us_per_trade": {
            name.removeprefix("cmdstat_"): round(v["usec"] / trades, 3) for name, v in top
        },
        "commands_per_trade": {
            name.removeprefix("cmdstat_"): round(v["calls"] / trades, 3) for name, v in top
        },
        "trades": trades,
        "trades_per_s": trades / stats["elapsed_s"],
        "process_wall_s": wall,
        "engine_s": stats["elapsed_s"],
        "peak_rss_mb": usage.ru_maxrss / 1024,
        # the ingester's own CPU (start-up included): what the ratio is bound by when Redis idles,
        # and steadier than trades/s on a shared machine
        "ingester_cpu_us_per_trade": (usage.ru_utime + usage.ru_stime) * 1e6 / trades,
        "max_batch": stats["max_batch"],
        "commits": stats["commits"],
    }


def _redis_cpu(r: redis.Redis) -> float:
    """The server's CPU seconds so far (user + sys, main thread and helpers alike)."""
    info = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


ONE_DB = {f"REDIS_DB_{s.name}": "0" for s in Store}  # every store in database 0


def engine_pools(url: str, settings: Settings):  # type: ignore[no-untyped-def]
    """The engine's clients: the topology seam, or (run with PYTHONPATH on code from before it,
    for a before/after pair) the per-database pools the engine took then."""
    try:
        from smarttrade.redis.topology import Topology
    except ImportError:
        from smarttrade.redis.connections import RedisPools

        return RedisPools(url, {settings.db(s) for s in Store}, 12)
    return Topology.standalone(url, settings, 12)


def records(n: int, seed: int) -> list[TradeRecord]:
    out: list[TradeRecord] = []
    for chunk in SyntheticFeed(SYMBOLS, seed=seed, count=n, start_day=DAY).chunks():
        for code, price, qty, side, t in zip(
            chunk.code.tolist(),
            chunk.price.tolist(),
            chunk.qty.tolist(),
            chunk.side.tolist(),
            chunk.time_us.tolist(),
            strict=True,
        ):
            out.append(TradeRecord(SYMBOLS[code], price, qty, side, t))
    return out


async def live_path(url: str, n: int) -> dict:
    settings = Settings(_env_file=None, redis_url=url)
    pools = engine_pools(url, settings)
    trades = records(n, seed=8)
    engine = Engine(pools, settings, "bench-live")
    live = LiveIngest(engine)
    await live.start()
    started = time.perf_counter()
    for trade in trades:
        await live.submit(trade)
    await live.close()
    elapsed = time.perf_counter() - started
    await pools.aclose()
    assert engine.stats.trades == n, engine.stats
    return {"trades": n, "trades_per_s": n / elapsed, "max_batch": engine.stats.max_batch}


def seed_style(url: str, n: int) -> dict:
    """The runbook's way: one command per write, JSON read-modify-write for order flow/footprint."""
    trades = records(n, seed=9)
    q, o, f = (redis.Redis.from_url(url, db=d) for d in (0, 1, 2))
    started = time.perf_counter()
    for t in trades:
        second = t.time_us // 1_000_000
        price = t.price / (1000 if t.symbol != "WIN" else 1)
        side = "buy" if t.side > 0 else "sell"
        quote = json.dumps({"symbol": t.symbol, "price": price, "volume": t.qty})
        q.execute_command("SETEX", f"quote:{t.symbol}:{second}", 60, quote)  # the runbook's command
        key = f"orderflow:{t.symbol}:{second}"
        bucket = json.loads(o.get(key) or '{"trades":[]}')
        bucket["trades"].append({"price": price, "volume": t.qty, "side": side, "time": t.time_us / 1e6})
        o.execute_command("SETEX", key, 300, json.dumps(bucket))
        key = f"footprint:{t.symbol}:{t.price}"
        level = json.loads(f.get(key) or '{"buy_volume":0,"sell_volume":0}')
        level["buy_volume" if t.side > 0 else "sell_volume"] += t.qty
        f.execute_command("SETEX", key, 600, json.dumps(level))
    elapsed = time.perf_counter() - started
    for c in (q, o, f):
        c.close()
    return {"trades": n, "trades_per_s": n / elapsed}


def redis_benchmark(port: int) -> dict:
    binary = find_redis_binary("redis-benchmark") if _has("redis-benchmark") else None
    if binary is None:
        return {"sets_per_s": None, "note": "redis-benchmark not found"}
    out = subprocess.run(
        [binary, "-p", str(port), "-P", "64", "-t", "set", "-n", "2000000", "-q"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    match = re.search(r"SET: ([\d.]+) requests per second", out.replace("\r", "\n"))
    return {"sets_per_s": float(match[1]) if match else None}


def _has(name: str) -> bool:
    try:
        find_redis_binary(name)
    except Exception:
        return False
    return True


async def latency(url: str, rate: int, seconds: float) -> dict:
    settings = Settings(_env_file=None, redis_url=url)
    pools = engine_pools(url, settings)
    sub = aioredis.Redis.from_url(url).pubsub()
    await sub.subscribe(*(f"trades:{s}" for s in SYMBOLS))
    for _ in SYMBOLS:
        await sub.get_message(timeout=1)
    engine = Engine(pools, settings, "bench-latency")
    live = LiveIngest(engine)
    await live.start()
    accepted: dict[str, list[float]] = {s: [] for s in SYMBOLS}
    latencies: list[float] = []
    n = int(rate * seconds)
    trades = records(n, seed=10)

    async def listen() -> None:
        while len(latencies) < n:
            message = await sub.get_message(timeout=1.0)
            if message is None or message["type"] != "message":
                continue
            now = time.perf_counter()
            body = json.loads(message["data"])
            queue = accepted[body["symbol"]]
            count = len(body["trades"])
            latencies.extend(now - t for t in queue[:count])
            del queue[:count]

    listener = asyncio.create_task(listen())
    start = time.perf_counter()
    for i, trade in enumerate(trades):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        t = TradeRecord(
            trade.symbol, trade.price, trade.qty, trade.side, int(time.time() * 1e6) // 1000 * 1000
        )
        accepted[t.symbol].append(time.perf_counter())
        await live.submit(t)
    await live.close()
    await asyncio.wait_for(listener, 30)
    await sub.aclose()
    await pools.aclose()
    ms = np.array(latencies) * 1000
    return {
        "rate": rate,
        "trades": len(latencies),
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trades", type=int, default=2_000_000, help="replay size (default 2,000,000)")
    parser.add_argument("--live-trades", type=int, default=300_000)
    parser.add_argument("--seed-trades", type=int, default=5_000)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--replay-only", action="store_true", help="only the replays (both layouts) and redis-benchmark"
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="smarttrade-bench-"))
    server = EmbeddedRedis(workdir / "redis", config={"save": "", "appendonly": "no", "maxmemory": "6gb"})
    server.start()
    try:
        print(f"private redis-server {server.binary or find_redis_binary()} on {server.url}", flush=True)
        results: dict = {}
        # before the replays too: on a shared machine the reference moves within a minute, and the
        # ratio divides by the mean of the two
        results["redis_benchmark_before"] = redis_benchmark(server.port)
        print("redis-benchmark, before", results["redis_benchmark_before"], flush=True)
        flush(server.url)
        results["replay"] = replay(server.url, args.trades, workdir)
        print("replay", results["replay"], flush=True)
        flush(server.url)
        results["replay_one_db"] = replay(server.url, args.trades, workdir, ONE_DB)
        print("replay, one database", results["replay_one_db"], flush=True)
        flush(server.url)
        if args.replay_only:
            results["redis_benchmark"] = redis_benchmark(server.port)
            print("redis-benchmark", results["redis_benchmark"], flush=True)
            _figures(results)
            if args.json:
                args.json.write_text(json.dumps(results, indent=2))
            return
        results["live"] = asyncio.run(live_path(server.url, args.live_trades))
        print("live", results["live"], flush=True)
        flush(server.url)
        results["seed_style"] = seed_style(server.url, args.seed_trades)
        print("seed-style", results["seed_style"], flush=True)
        flush(server.url)
        results["latency"] = asyncio.run(latency(server.url, 5000, 6.0))
        print("latency", results["latency"], flush=True)
        flush(server.url)
        results["redis_benchmark"] = redis_benchmark(server.port)
        print("redis-benchmark", results["redis_benchmark"], flush=True)
    finally:
        server.stop(save=False)
    _figures(results)
    r, s, lat = results["replay"], results["seed_style"], results["latency"]
    ratio = r["trades_per_s"] / s["trades_per_s"]
    sets = _sets_per_s(results)
    rows = [
        (
            "replay trades/s",
            f"{r['trades_per_s']:,.0f}",
            f">= {TARGETS['replay']:,}",
            r["trades_per_s"] >= TARGETS["replay"],
        ),
        (
            "replay vs seed-style",
            f"{ratio:,.0f}x",
            f">= {TARGETS['ratio_seed']}x",
            ratio >= TARGETS["ratio_seed"],
        ),
        (
            "live path trades/s",
            f"{results['live']['trades_per_s']:,.0f}",
            f">= {TARGETS['live']:,}",
            results["live"]["trades_per_s"] >= TARGETS["live"],
        ),
        (
            "latency p50 / p99 at 5k/s",
            f"{lat['p50_ms']:.2f} / {lat['p99_ms']:.2f} ms",
            f"p99 <= {TARGETS['p99_ms']} ms",
            lat["p99_ms"] <= TARGETS["p99_ms"],
        ),
        (
            "ingester peak RSS",
            f"{r['peak_rss_mb']:.0f} MB",
            f"<= {TARGETS['rss_mb']} MB",
            r["peak_rss_mb"] <= TARGETS["rss_mb"],
        ),
        ("seed-style trades/s", f"{s['trades_per_s']:,.0f}", "", True),
        ("redis-benchmark -P 64 SET/s", f"{sets:,.0f}" if sets else "n/a", "reference", True),
    ]
    print()
    width = max(len(name) for name, *_ in rows)
    for name, value, target, ok in rows:
        mark = "" if not target or target == "reference" else ("ok" if ok else "MISSED")
        print(f"{name:<{width}}  {value:>22}  {target:<18} {mark}")
    results["ratio_vs_seed"] = ratio
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def _sets_per_s(results: dict) -> float | None:
    """redis-benchmark's SET/s around the replays: the mean of its runs before and after."""
    runs = [results[k]["sets_per_s"] for k in ("redis_benchmark_before", "redis_benchmark")]
    return sum(runs) / 2 if None not in runs else None


def _figures(results: dict) -> None:
    """Issue 10's two figures, from the same server: replay trades/s over redis-benchmark's SET/s,
    and Redis CPU per trade over the replay (INFO cpu), per layout."""
    sets = _sets_per_s(results)
    print()
    for name, target in (("replay", 1.0), ("replay_one_db", 1.1)):
        r = results[name]
        ratio = r["trades_per_s"] / sets if sets else float("nan")
        r["ratio_vs_redis_benchmark"] = ratio
        cpu = r["redis_cpu_us_per_trade"]
        ok_ratio = "ok" if ratio >= 0.25 / target else "MISSED"
        ok_cpu = "ok" if cpu <= 0.9 * target else "MISSED"
        print(f"{name:<14} trades/s / redis-benchmark SET/s {ratio:6.3f} (>= {0.25 / target:.3f}) {ok_ratio}")
        print(f"{name:<14} Redis CPU per trade {cpu:6.2f} µs (<= {0.9 * target:.2f}) {ok_cpu}")


if __name__ == "__main__":
    main()
