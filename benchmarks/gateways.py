"""Several gateways (issue 12): N WebSocket clients on one gateway against the same N split over two
gateway processes (`smarttrade gateway`, uvicorn), one standalone Redis and one ingester at the
same rate, measured the way benchmarks/fanout.py measures one gateway (its client and ingester
child processes, its latency histogram and gap check are reused here, not copied).

    .venv/bin/python benchmarks/gateways.py [--clients 200] [--rate 2000] [--seconds 5] [--binary PATH]

Per layout: the ingester's commits (one pub/sub message each: a busier machine batches more
trades per commit, so fewer frames; trades delivered/s is the figure to compare), delivered
frames/s, trades delivered/s (the sampled clients' trades scaled to all clients), trade-accepted
-> frame-received latency p50/p99, the sampled clients' gap check, and each gateway's CPU (% of
one core). About 20-30 s in all. ``two_gateways(binary, workdir)`` is what
benchmarks/scale.py calls; main() prints a table (and --json the dicts).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `benchmarks.fanout` when run as a script
from benchmarks import fanout

from smarttrade.redis.embedded import EmbeddedRedis, find_redis_binary

CLIENTS = 200
RATE = 2000.0  # trades/s accepted by the ingester, over fanout.SYMBOLS
SECONDS = 5.0
SETTLE_S = 1.0  # a gateway's lifespan (hub, presence) is up this long after its port answers


def _layout(
    redis_url: str, env: dict[str, str], gateways: int, clients: int, rate: float, seconds: float
) -> dict:
    """One run: ``gateways`` gateway processes, ``clients`` sockets split evenly over them."""
    ports = [fanout.free_port() for _ in range(gateways)]
    servers = [fanout.start_server("uvicorn", port, env) for port in ports]
    kids = fanout.Children()
    try:
        for port, server in zip(ports, servers, strict=True):
            fanout.wait_port(port, server)
        time.sleep(SETTLE_S)
        ingest = kids.spawn(["--ingest", redis_url, str(rate), str(seconds)], env)
        procs, first = [], 0
        for port, n in zip(ports, fanout.split(clients, gateways), strict=True):
            procs.append(kids.spawn(["--client", str(port), str(first), str(n), "load"], env))
            first += n
        for p in [ingest, *procs]:
            kids.ready(p)
        cpu0, t0 = [fanout.cpu_s(s.pid) for s in servers], time.monotonic()
        for p in [*procs, ingest]:
            kids.say(p, f"go {seconds}")
        ing = kids.result(ingest, seconds + 60)
        results = [kids.result(p, seconds + fanout.HARD_EXTRA_S + 30) for p in procs]
        wall = time.monotonic() - t0
        cpu = [round((fanout.cpu_s(s.pid) - c0) / wall * 100) for s, c0 in zip(servers, cpu0, strict=True)]
    finally:
        kids.end()
        for server in servers:
            fanout.stop(server)
    hist: Counter[int] = Counter()
    for r in results:
        hist.update({int(k): v for k, v in r["hist"].items()})
    frames = sum(r["frames"] for r in results)
    took = max(r["seconds"] for r in results)
    samples = [s for r in results for s in r["offsets"]]
    return {
        "gateways": gateways,
        "clients": clients,
        "accepted_per_s": round(ing["accepted_per_s"]),
        "frames_per_s": round(frames / took) if took > 0 else 0,
        "trades_delivered_per_s": round(sum(hist.values()) / max(1, len(samples)) * clients / took)
        if took > 0
        else 0,
        "latency_ms": {k: round(fanout.hist_pct(hist, q), 1) for k, q in (("p50", 0.5), ("p99", 0.99))},
        "gap_check": fanout.gaps(redis_url, samples, naive=False),
        "gateway_cpu_pct": cpu,
    }


async def two_gateways(
    binary: str, workdir: Path, clients: int = CLIENTS, rate: float = RATE, seconds: float = SECONDS
) -> dict[str, Any]:
    """The same clients and feed on one gateway, then split over two; the two layouts' figures and
    their frames/s ratio (two over one). Runs its own Redis (``binary``) in ``workdir``."""
    import redis

    server = EmbeddedRedis(
        data_dir=workdir, config={"save": "", "appendonly": "no", "maxclients": "20000"}, binary=binary
    )
    server.start()
    env = {
        **os.environ,
        "REDIS_URL": server.url,
        "SMARTTRADE_GATEWAY_SECRET": fanout.SECRET,
        "PYTHONPATH": str(fanout.ROOT),
    }
    rows = []
    try:
        for gateways in (1, 2):
            with redis.Redis(port=server.port) as r:
                r.flushall()  # our own server, started above
            rows.append(_layout(server.url, env, gateways, clients, rate, seconds))
    finally:
        server.stop(save=False)
    one, two = rows
    ratio = two["frames_per_s"] / one["frames_per_s"] if one["frames_per_s"] else float("nan")
    return {
        "rate": rate,
        "seconds": seconds,
        "one": one,
        "two": two,
        "frames_ratio_two_over_one": round(ratio, 2),
    }


COLUMNS = ("gateways", "clients", "commits", "frames/s", "trades/s", "p50 ms", "p99 ms", "gaps", "cpu %")


def table(result: dict[str, Any]) -> str:
    """The two layouts side by side (one gateway's CPU per gateway, slash-separated)."""
    rows = [COLUMNS]
    for r in (result["one"], result["two"]):
        lat, cpu = r["latency_ms"], "/".join(map(str, r["gateway_cpu_pct"]))
        got = (
            r["frames_per_s"],
            r["trades_delivered_per_s"],
            lat["p50"],
            lat["p99"],
            r["gap_check"]["with_gap"],
        )
        rows.append((r["gateways"], r["clients"], r["gap_check"]["commits"], *got, cpu))
    lines = [" ".join(f"{v!s:>9}" for v in row) for row in rows]
    lines.append(
        f"two/one frames/s: {result['frames_ratio_two_over_one']} (feed {result['rate']:g} trades/s)"
    )
    return "\n".join(lines)


def main() -> None:
    import asyncio

    fanout.raise_nofile()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=CLIENTS)
    ap.add_argument("--rate", type=float, default=RATE)
    ap.add_argument("--seconds", type=float, default=SECONDS)
    ap.add_argument("--binary", default=None, help="redis-server (default: the one the project finds)")
    ap.add_argument("--json", type=Path, help="also write the result here")
    args = ap.parse_args()
    if not (2 <= args.clients <= 2000 and 0 < args.seconds <= 30 and 0 < args.rate <= 20_000):
        raise SystemExit("--clients 2..2000, --seconds up to 30, --rate up to 20000")
    with tempfile.TemporaryDirectory(prefix="gateways-bench-") as tmp:
        result = asyncio.run(
            two_gateways(
                str(Path(args.binary).resolve()) if args.binary else find_redis_binary(),
                Path(tmp),
                args.clients,
                args.rate,
                args.seconds,
            )
        )
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
