"""Fan-out benchmark: N real WebSocket clients on 3 symbols x quotes, trades, footprint while the
live synthetic ingester runs at K trades/s, against our gateway (uvicorn websockets-sansio without
per-message deflate, and granian) and a naive baseline (one Redis pub/sub subscription and one JSON
encode per client), in one run on one private redis-server (never 6379).

    .venv/bin/python benchmarks/fanout.py [--clients 200] [--rate 5000] [--seconds 10] [--procs 2]

Measured per server: frames/s delivered to all clients, latency from a trade's time (the live feed
stamps trades with the wall clock when it releases them) to its trades frame received (p50/p99/max,
sampled on every 10th client), the gateway process's CPU (% of one core) and peak RSS (VmHWM).
Every loop is bounded by --seconds; the clients run in --procs separate processes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
SYMBOLS = ["WIN", "DOL", "WDO"]
CHANNELS = ["quotes", "trades", "footprint"]
SECRET = "bench-secret-" + "z" * 40
SAMPLE_EVERY = 10  # clients whose trades frames are parsed for latency


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- clients (a child process) -------------------------------------------------------------------


async def run_clients(url: str, first: int, n: int, seconds: float, naive: bool) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    from smarttrade.gateway.auth import Tokens

    tokens = Tokens(SECRET)
    frames = [0]
    lat: list[float] = []
    ready = asyncio.Event()
    connected = [0]
    deadline = time.time() + seconds + 30

    async def one(i: int) -> None:
        token = tokens.create(f"bench{i}")
        async with connect(f"{url}?token={token}", max_queue=64, ping_interval=None) as ws:
            sub = {"type": "subscribe", "symbols": SYMBOLS, "channels": CHANNELS}
            await ws.send(json.dumps(sub))
            connected[0] += 1
            if connected[0] == n:
                ready.set()
            sample = i % SAMPLE_EVERY == 0
            while time.time() < deadline:
                try:
                    msg = await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.time()))
                except TimeoutError:
                    break
                now = time.time()
                frames[0] += 1
                if sample and msg.startswith('{"type":"trades"'):
                    trades = json.loads(msg)["trades"]
                    if trades:
                        lat.append(now - max(t["time"] for t in trades))

    tasks = [asyncio.create_task(one(first + i)) for i in range(n)]
    await asyncio.wait_for(ready.wait(), 60)
    print("ready", flush=True)
    line = await asyncio.to_thread(sys.stdin.readline)  # "go SECONDS": count from here
    started = time.time()
    frames[0], lat[:] = 0, []
    deadline = started + float(line.split()[1])
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"frames": frames[0], "seconds": time.time() - started, "latency": lat}


# --- the naive baseline server (a child process) ---------------------------------------------------


def naive_app() -> Any:
    """One pub/sub subscription and one decode + encode per client: what a first version does."""
    import redis.asyncio as aioredis
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket

    url = os.environ["REDIS_URL"]

    def dumps(value: object) -> str:
        return json.dumps(value, separators=(",", ":"))

    async def ws_route(ws: WebSocket) -> None:
        await ws.accept()
        sub = json.loads(await ws.receive_text())
        client = aioredis.from_url(url)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(*[f"trades:{s}" for s in sub["symbols"]])
        try:
            while True:
                m = await pubsub.get_message(timeout=1.0)
                if m is None:
                    continue
                msg = json.loads(m["data"])
                head = {"symbol": msg["symbol"], "offset": msg["offset"], "epoch": msg["epoch"]}
                await ws.send_text(dumps({"type": "trades", **head, "trades": msg["trades"]}))
                if msg["quote"]:
                    await ws.send_text(dumps({"type": "quote", **head, "quote": msg["quote"]}))
                levels: dict[float, list[float]] = {}
                for t in msg["trades"]:
                    entry = levels.setdefault(t["price"], [0, 0])
                    entry[0 if t["side"] == "buy" else 1] += t["volume"]
                rows = [{"price": p, "buy": b, "sell": s} for p, (b, s) in levels.items()]
                await ws.send_text(dumps({"type": "footprint", **head, "levels": rows}))
        except Exception:  # the client went away
            pass
        finally:
            await pubsub.aclose()
            await client.aclose()

    return Starlette(routes=[WebSocketRoute("/ws", ws_route)])


# --- the parent ------------------------------------------------------------------------------------


def _tree(pid: int) -> list[psutil.Process]:
    """The server and its workers (granian serves from a child process)."""
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def peak_rss_mb(pid: int) -> float:
    """The largest peak RSS (VmHWM) of the server's processes."""
    best = 0
    for proc in _tree(pid):
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                best = max(best, int(line.split()[1]))
    return best / 1024


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of the server's processes."""
    return sum(sum(p.cpu_times()[:2]) for p in _tree(pid))


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"no server on port {port}")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def measure(kind: str, redis_url: str, args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "SMARTTRADE_GATEWAY_SECRET": SECRET, "PYTHONPATH": str(ROOT)}
    py = sys.executable
    if kind == "naive":
        cmd = [py, "-m", "uvicorn", "benchmarks.fanout:naive_app", "--factory", "--port", str(port)]
        cmd += ["--host", "127.0.0.1", "--ws", "websockets-sansio", "--ws-per-message-deflate", "false"]
        cmd += ["--log-level", "warning"]
    else:
        cmd = [py, str(ROOT / "benchmarks" / "run_gateway.py"), "--port", str(port), "--server", kind]
    server = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    clients: list[subprocess.Popen] = []
    try:
        wait_port(port, server)
        time.sleep(1.0)  # the lifespan (hub, presence) is up
        per = [
            args.clients // args.procs + (1 if i < args.clients % args.procs else 0)
            for i in range(args.procs)
        ]
        first = 0
        for n in per:
            clients.append(
                subprocess.Popen(
                    [py, __file__, "--client", f"ws://127.0.0.1:{port}/ws", str(first), str(n),
                     str(args.seconds), kind],
                    env=env, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                )
            )  # fmt: skip
            first += n
        for c in clients:
            assert c.stdout is not None and c.stdout.readline().strip() == "ready", "a client process failed"
        rate = args.rate / len(SYMBOLS)
        ingest = subprocess.Popen(
            [str(Path(py).with_name("smarttrade")), "ingest", "--synthetic", "--symbols", ",".join(SYMBOLS),
             "--rate", f"{rate:g}", "--duration", str(args.seconds + 2), "--source", f"bench-{kind}"],
            env=env, cwd=tempfile.gettempdir(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        time.sleep(2.0)  # warm-up: the ingester connects and starts
        cpu0, t0 = cpu_s(server.pid), time.time()
        for c in clients:
            assert c.stdin is not None
            c.stdin.write(f"go {args.seconds}\n")
            c.stdin.flush()
        results = [json.loads(c.communicate(timeout=args.seconds + 60)[0].splitlines()[-1]) for c in clients]
        cpu = (cpu_s(server.pid) - cpu0) / (time.time() - t0)
        rss = peak_rss_mb(server.pid)
        ingest.wait(60)
    finally:
        for p in [*clients, server]:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
    lat = [x for r in results for x in r["latency"]]
    frames = sum(r["frames"] for r in results)
    seconds = max(r["seconds"] for r in results)
    return {
        "server": kind,
        "clients": args.clients,
        "rate": args.rate,
        "frames_per_s": round(frames / seconds),
        "latency_ms": {
            k: round(percentile(lat, q) * 1000, 1) for k, q in (("p50", 0.5), ("p99", 0.99), ("max", 1.0))
        },
        "latency_samples": len(lat),
        "gateway_cpu_pct": round(cpu * 100),
        "gateway_peak_rss_mb": round(rss, 1),
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        url, first, n, seconds, kind = sys.argv[2:7]
        result = asyncio.run(run_clients(url, int(first), int(n), float(seconds), kind == "naive"))
        print(json.dumps(result), flush=True)
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--rate", type=float, default=5000, help="trades/s over all symbols")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--procs", type=int, default=2, choices=[1, 2])
    ap.add_argument("--servers", default="uvicorn,granian,naive")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    if not (0 < args.clients <= 2000 and 0 < args.seconds <= 120 and 0 < args.rate <= 50_000):
        raise SystemExit("--clients 1..2000, --seconds up to 120, --rate up to 50000")
    from smarttrade.redis.embedded import EmbeddedRedis, find_redis_binary

    with tempfile.TemporaryDirectory(prefix="fanout-bench-") as tmp:
        server = EmbeddedRedis(
            data_dir=Path(tmp), config={"save": "", "appendonly": "no"}, binary=find_redis_binary()
        )
        server.start()
        try:
            rows = []
            for kind in args.servers.split(","):
                import redis

                with redis.Redis(port=server.port) as r:
                    r.flushall()  # our own server, started above
                rows.append(measure(kind, server.url, args))
                print(json.dumps(rows[-1]), flush=True)
        finally:
            server.stop(save=False)
    print(f"\n{'server':<8} {'clients':>7} {'trades/s':>8} {'frames/s':>9} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'max ms':>7} {'cpu %':>6} {'rss MB':>7}")  # fmt: skip
    for r in rows:
        lat, cpu, rss = r["latency_ms"], r["gateway_cpu_pct"], r["gateway_peak_rss_mb"]
        print(f"{r['server']:<8} {r['clients']:>7} {r['rate']:>8g} {r['frames_per_s']:>9} {lat['p50']:>7} "
              f"{lat['p99']:>7} {lat['max']:>7} {cpu:>6} {rss:>7}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
