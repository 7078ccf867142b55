"""Fan-out benchmark (issue 11): N WebSocket clients on 3 symbols x quotes, trades, footprint while
an ingester accepts K trades/s, against our gateway (uvicorn and/or granian, `smarttrade gateway`)
and a naive baseline (one Redis pub/sub subscription and one JSON encode per client), in one run
on one private redis-server (never 6379). Loopback only; every phase bounded in count and time.

    .venv/bin/python benchmarks/fanout.py [--clients 200] [--rate 5000] [--seconds 8]
        [--procs 2] [--servers uvicorn,naive] [--rest 1000] [--idle 0] [--json out.json]

Measured per server:
- delivered frames/s (all frames received by all clients during the run, over its length) and
  delivered trades/s (trades in the sampled clients' frames, scaled to all clients: a batch is one
  frame for many commits, so this is the measure to compare with the baseline);
- latency from a trade accepted by the ingester (``LiveIngest.submit``; the trade is stamped with
  the wall clock at acceptance, and every process here shares that clock) to its ``trades`` frame
  received by a client, p50/p99/max over every trade received by the sampled clients;
- the ingester's own share: accepted to its pub/sub message at a plain subscriber, p50/p99/max;
- "no gap": each sampled client's ``trades`` offsets per symbol must be exactly the stream's
  entries after its snapshot (XRANGE count between them), strictly increasing;
- gateway CPU (% of one core) and peak RSS (VmHWM), the client processes' CPU;
- REST latest quote (``GET /api/quotes/WIN``) p50/p99 at --rest requests/s during the run;
- with --idle N: the gateway's RSS with N idle authenticated sockets open (a separate phase).

Clients are raw asyncio sockets with a minimal WebSocket frame reader: only the sampled clients
(every SAMPLE_EVERY-th, at most MAX_SAMPLED) parse JSON, so the clients stay cheap.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
SYMBOLS = ["WIN", "DOL", "WDO"]
CHANNELS = ["quotes", "trades", "footprint"]
SECRET = "bench-secret-" + "z" * 40
SAMPLE_EVERY = 10
MAX_SAMPLED = 24
BIN_S = 0.0001  # latency histogram bins of 0.1 ms
DRAIN_S = 1.5  # a client stops after this long without frames once the ingester is done
HARD_EXTRA_S = 30.0  # and in any case this long after the run
OPEN_AT_ONCE = 50  # sockets a client process opens concurrently


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_nofile() -> None:
    """Sockets are files: lift the soft limit to the hard one (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def cpu_self() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


# --- a minimal WebSocket client ---------------------------------------------------------------------


def ws_frame(data: str | bytes, opcode: int = 1) -> bytes:
    """A masked client frame (the mask key is zero: legal, and the payload stays as is)."""
    payload = data.encode() if isinstance(data, str) else data
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, 0x80 | n])
    elif n < 65536:
        head = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
    return head + b"\0\0\0\0" + payload


class WSClient(asyncio.Protocol):
    """Counts frames; a sampled one parses them for latency and offsets."""

    def __init__(
        self, path: str, port: int, sub: str | None, sampled: bool, stats: dict[str, Any], acks: bool
    ) -> None:
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        self.sub, self.sampled, self.stats = sub, sampled, stats
        self.buf = bytearray()
        self.upgraded = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.frames = 0
        self.last_at = 0.0
        self.start: dict[str, str] = {}  # symbol -> the snapshot's offset
        self.offsets: dict[str, list[str]] = {s: [] for s in SYMBOLS}
        self.close_code: int | None = None
        self.pending_acks = len(SYMBOLS) if sub is not None and acks else 0  # the naive one has none
        self.live = asyncio.get_running_loop().create_future()  # every symbol "subscribed"
        if not self.pending_acks:
            self.live.set_result(None)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError("closed during the handshake"))

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.upgraded.done():
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if b" 101 " not in buf[: buf.find(b"\r\n")]:
                self.upgraded.set_exception(ConnectionError(bytes(buf[:end]).decode(errors="replace")))
                return
            del buf[: end + 4]
            if self.sub is not None:
                self.transport.write(ws_frame(self.sub))  # type: ignore[union-attr]
            self.upgraded.set_result(None)
        pos, n = 0, len(buf)
        frames = 0
        while n - pos >= 2:
            ln = buf[pos + 1] & 0x7F
            head = 2
            if ln == 126:
                if n - pos < 4:
                    break
                ln, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif ln == 127:
                if n - pos < 10:
                    break
                ln, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            if n - pos < head + ln:
                break
            op = buf[pos] & 0x0F
            if op == 1:
                frames += 1
                if self.pending_acks and buf.startswith(b'{"type":"subscribed"', pos + head):
                    self.pending_acks -= 1
                    if not self.pending_acks:
                        self.live.set_result(None)
                if self.sampled:
                    self._sample(bytes(buf[pos + head : pos + head + ln]))
            elif op == 9:  # ping: pong with its payload
                self.transport.write(ws_frame(bytes(buf[pos + head : pos + head + ln]), 10))  # type: ignore[union-attr]
            elif op == 8:
                self.close_code = int.from_bytes(buf[pos + head : pos + head + 2], "big") if ln >= 2 else 1005
            pos += head + ln
        if pos:
            del buf[:pos]
        if frames:
            self.frames += frames
            self.last_at = time.monotonic()

    def _sample(self, payload: bytes) -> None:
        if payload.startswith(b'{"type":"trades"'):
            now = time.time()
            m = json.loads(payload)
            hist = self.stats["hist"]
            for t in m["trades"]:
                hist[int((now - t["time"]) / BIN_S)] += 1
            offsets = self.offsets[m["symbol"]]
            if "offsets" in m:  # a batch of several commits
                offsets.extend(m["offsets"])
            else:
                offsets.append(m["offset"])
        elif payload.startswith(b'{"type":"snapshot"'):
            m = json.loads(payload)
            self.start[m["symbol"]] = m["offset"]


async def open_ws(
    port: int, path: str, sub: str | None, sampled: bool, stats: dict[str, Any], acks: bool
) -> WSClient:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(
        lambda: WSClient(path, port, sub, sampled, stats, acks), "127.0.0.1", port
    )
    await asyncio.wait_for(proto.upgraded, 30)
    await asyncio.wait_for(proto.live, 60)
    return proto


async def run_clients(port: int, first: int, n: int, mode: str) -> None:
    """A client process: connect n sockets, say "ready", wait for "go", count until drained."""
    from smarttrade.gateway.auth import Tokens

    tokens = Tokens(SECRET)
    idle = mode == "idle"
    stats: dict[str, Any] = {"hist": Counter()}
    sub = None if idle else json.dumps({"type": "subscribe", "symbols": SYMBOLS, "channels": CHANNELS})
    clients: list[WSClient] = []
    sampled_left = MAX_SAMPLED
    wanted = []
    for i in range(first, first + n):
        sampled = not idle and i % SAMPLE_EVERY == 0 and sampled_left > 0
        sampled_left -= sampled
        wanted.append((f"/ws?token={tokens.create(f'bench{i}', ttl_s=3600)}", sampled))
    for k in range(0, n, OPEN_AT_ONCE):
        clients += await asyncio.gather(
            *(
                open_ws(port, path, sub, sampled, stats, mode != "naive")
                for path, sampled in wanted[k : k + OPEN_AT_ONCE]
            )
        )
    print("ready", flush=True)
    line = await asyncio.to_thread(sys.stdin.readline)  # "go SECONDS"
    run_s = float(line.split()[1])
    cpu0, t0 = cpu_self(), time.monotonic()
    for c in clients:
        c.frames = 0
    if idle:
        await asyncio.to_thread(sys.stdin.readline)  # "stop"
    else:
        await asyncio.sleep(run_s)
        while time.monotonic() - t0 < run_s + HARD_EXTRA_S:
            latest = max(c.last_at for c in clients)
            if time.monotonic() - latest > DRAIN_S:
                break
            await asyncio.sleep(0.2)
    elapsed = max(c.last_at for c in clients) - t0 if not idle else time.monotonic() - t0
    result = {
        "frames": sum(c.frames for c in clients),
        "seconds": elapsed,
        "cpu_s": cpu_self() - cpu0,
        "hist": {str(k): v for k, v in stats["hist"].items()},
        "offsets": [{"start": c.start, "offsets": c.offsets} for c in clients if c.sampled],
        "closed": Counter(str(c.close_code) for c in clients if c.closed.done()),
    }
    for c in clients:
        if c.transport is not None:
            c.transport.close()
    print(json.dumps(result), flush=True)


# --- the ingester (a child process): trades accepted one at a time, stamped at acceptance --------


async def run_ingest(url: str, rate: float, seconds: float) -> None:
    from benchmarks.ingest import records

    from smarttrade.feeds.record import TradeRecord
    from smarttrade.ingest.engine import Engine
    from smarttrade.ingest.live import LiveIngest
    from smarttrade.redis.topology import Topology
    from smarttrade.settings import Settings

    settings = Settings(_env_file=None, redis_url=url)
    pools = Topology.standalone(url, settings, 12)
    engine = Engine(pools, settings, "bench-fanout")
    live = LiveIngest(engine)
    await live.start()
    n = int(rate * seconds)
    trades = records(n, seed=11)
    # the ingester's own share of the latency: accepted -> its pub/sub message at a subscriber
    # (here, one more connection), to tell it from the gateway's
    import redis.asyncio as aioredis

    sub = aioredis.Redis.from_url(url).pubsub(ignore_subscribe_messages=True)
    await sub.psubscribe("trades:*")
    published: Counter[int] = Counter()
    done = asyncio.Event()

    async def listen() -> None:
        while not done.is_set():
            m = await sub.get_message(timeout=0.2)
            if m is not None:
                now = time.time()
                for t in json.loads(m["data"])["trades"]:
                    published[int((now - t["time"]) / BIN_S)] += 1

    listener = asyncio.create_task(listen())
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    start = time.perf_counter()
    behind = 0.0
    for i, tr in enumerate(trades):
        delay = start + i / rate - time.perf_counter()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        else:
            behind = max(behind, -delay)
        await live.submit(TradeRecord(tr.symbol, tr.price, tr.qty, tr.side, int(time.time() * 1e6)))
    elapsed = time.perf_counter() - start
    await live.close()
    await asyncio.sleep(0.5)
    done.set()
    await listener
    await sub.aclose()
    await pools.aclose()
    pub_ms = {k: round(hist_pct(published, q), 1) for k, q in (("p50", 0.5), ("p99", 0.99), ("max", 1.0))}
    print(
        json.dumps({"trades": n, "accepted_per_s": n / elapsed, "max_behind_s": behind, "pubsub_ms": pub_ms})
    )


# --- REST latest quote under load (a child process): raw keep-alive HTTP/1.1 ----------------------


async def run_rest(port: int, rate: float, seconds: float, conns: int = 32) -> None:
    from smarttrade.gateway.auth import Tokens

    token = Tokens(SECRET).create("bench-rest", ttl_s=3600)
    req = (
        f"GET /api/quotes/WIN HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\r\n"
    ).encode()
    lat: list[float] = []
    status: Counter[int] = Counter()
    n = int(rate * seconds)
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    start = time.perf_counter()

    async def one(k: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for i in range(k, n, conns):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            t0 = time.perf_counter()
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            lat.append(time.perf_counter() - t0)
            status[int(head.split(b" ")[1])] += 1
        writer.close()

    await asyncio.wait_for(asyncio.gather(*(one(k) for k in range(conns))), seconds + 30)
    lat.sort()
    print(
        json.dumps(
            {
                "requests": len(lat),
                "per_s": len(lat) / (time.perf_counter() - start),
                "p50_ms": lat[len(lat) // 2] * 1000,
                "p99_ms": lat[int(len(lat) * 0.99)] * 1000,
                "max_ms": lat[-1] * 1000,
                "status": dict(status),
            }
        ),
        flush=True,
    )


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
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def rss_mb(pid: int, field: str = "VmHWM") -> float:
    """The largest VmHWM (peak) or VmRSS of the server's processes (granian serves from a child)."""
    best = 0
    for proc in _tree(pid):
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                best = max(best, int(line.split()[1]))
    return best / 1024


def cpu_s(pid: int) -> float:
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


def hist_pct(hist: Counter[int], q: float) -> float:
    total = sum(hist.values())
    if not total:
        return float("nan")
    want, seen = q * total, 0
    for k in sorted(hist):
        seen += hist[k]
        if seen >= want:
            return (k + 1) * BIN_S * 1000
    return float("nan")


def gaps(redis_url: str, samples: list[dict[str, Any]], naive: bool) -> dict[str, int]:
    """Sampled clients' trades offsets against the stream: missing, duplicated or out of order;
    and how many commits the run made (each is one pub/sub message)."""
    import redis

    from smarttrade.keyspace import Store, trades_stream_key
    from smarttrade.redis.topology import Placement
    from smarttrade.settings import Settings

    db = Placement.from_settings(Settings(_env_file=None, redis_url=redis_url)).db(Store.ORDERFLOW)
    bad = checked = 0
    with redis.Redis.from_url(redis_url, db=db) as r:
        commits = sum(r.xlen(trades_stream_key(sym)) for sym in SYMBOLS)
        for s in samples:
            for sym, offs in s["offsets"].items():
                if not offs:
                    continue
                checked += 1
                start = s["start"].get(sym)
                if naive or start is None:
                    start, offs = offs[0], offs[1:]
                if not offs:
                    continue
                low = "(" + start if start else "-"  # "": the stream was empty at the snapshot
                want = [e[0].decode() for e in r.xrange(trades_stream_key(sym), low, offs[-1])]
                if want != offs:
                    bad += 1
                    miss = sorted(set(want) - set(offs))[:3]
                    extra = sorted(set(offs) - set(want))[:3]
                    print(
                        f"gap {sym}: {len(want)} in the stream, {len(offs)} received; missing {miss}, "
                        f"unexpected {extra}",
                        file=sys.stderr,
                    )
    return {"streams_checked": checked, "with_gap": bad, "commits": commits}


class Children:
    """Child processes, each answering "ready" then one JSON line; all ended on exit."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def spawn(self, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        p = subprocess.Popen(
            [sys.executable, __file__, *args],
            env=env,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.procs.append(p)
        return p

    @staticmethod
    def ready(p: subprocess.Popen, timeout: float = 120) -> None:
        assert p.stdout is not None
        line = p.stdout.readline().strip()
        if line != "ready":
            raise SystemExit(f"a child failed to start: {line!r}")

    @staticmethod
    def say(p: subprocess.Popen, line: str) -> None:
        assert p.stdin is not None
        p.stdin.write(line + "\n")
        p.stdin.flush()

    @staticmethod
    def result(p: subprocess.Popen, timeout: float) -> dict[str, Any]:
        out, _ = p.communicate(timeout=timeout)
        return json.loads(out.strip().splitlines()[-1])

    def end(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)


def start_server(kind: str, port: int, env: dict[str, str]) -> subprocess.Popen:
    if kind == "naive":
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "benchmarks.fanout:naive_app",
            "--factory",
            "--port",
            str(port),
        ]
        cmd += ["--host", "127.0.0.1", "--ws", "websockets-sansio", "--ws-per-message-deflate", "false"]
        cmd += ["--log-level", "warning"]
    else:
        cmd = [
            str(Path(sys.executable).with_name("smarttrade")),
            "gateway",
            "--port",
            str(port),
            "--server",
            kind,
        ]
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def split(n: int, procs: int) -> list[int]:
    return [n // procs + (1 if i < n % procs else 0) for i in range(procs) if n // procs or i < n % procs]


def stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def measure(kind: str, redis_url: str, env: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    server = start_server(kind, port, env)
    kids = Children()
    try:
        wait_port(port, server)
        time.sleep(1.0)  # the lifespan (hub, presence) is up
        ingest = kids.spawn(["--ingest", redis_url, str(args.rate), str(args.seconds)], env)
        clients, first = [], 0
        for n in split(args.clients, args.procs):
            mode = "naive" if kind == "naive" else "load"
            clients.append(kids.spawn(["--client", str(port), str(first), str(n), mode], env))
            first += n
        rest = None
        if args.rest and kind != "naive":  # the baseline has no HTTP API
            rest = kids.spawn(["--rest", str(port), str(args.rest), str(args.seconds)], env)
        for p in [ingest, *clients, *([rest] if rest else [])]:
            kids.ready(p)
        time.sleep(0.5)
        cpu0, t0 = cpu_s(server.pid), time.monotonic()
        spy = None
        if args.profile:  # py-spy (pip install py-spy): collapsed stacks of the server
            out = args.profile / f"{kind}-{args.clients}x{args.rate:g}.txt"
            spy_cmd = [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(server.pid)]
            spy_cmd += ["--format", "raw", "--duration", str(int(args.seconds)), "--rate", "200"]
            spy_cmd += ["--nonblocking", "--subprocesses", "-o", str(out)]
            spy = subprocess.Popen(spy_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for p in [*clients, ingest, *([rest] if rest else [])]:
            kids.say(p, f"go {args.seconds}")
        try:
            ing = kids.result(ingest, args.seconds + 60)
        except subprocess.TimeoutExpired:  # it could not get its trades through in time
            ingest.kill()
            ing = {"accepted_per_s": 0, "timed_out": True}
        rest_r = kids.result(rest, args.seconds + 60) if rest else None
        results = [kids.result(c, args.seconds + HARD_EXTRA_S + 30) for c in clients]
        cpu = (cpu_s(server.pid) - cpu0) / (time.monotonic() - t0)
        peak = rss_mb(server.pid)
        if spy is not None:
            spy.wait(30)
    finally:
        kids.end()
        stop(server)
    hist: Counter[int] = Counter()
    for r in results:
        hist.update({int(k): v for k, v in r["hist"].items()})
    frames = sum(r["frames"] for r in results)
    seconds = max(r["seconds"] for r in results)
    samples = [s for r in results for s in r["offsets"]]
    closed: Counter[str] = Counter()
    for r in results:
        closed.update(r["closed"])
    return {
        "server": kind,
        "clients": args.clients,
        "rate": args.rate,
        "accepted_per_s": round(ing["accepted_per_s"]),
        "ingester_timed_out": ing.get("timed_out", False),
        "ingester_pubsub_latency_ms": ing.get("pubsub_ms"),
        "frames_per_s": round(frames / seconds) if seconds > 0 else 0,
        "latency_ms": {
            k: round(hist_pct(hist, q), 1) for k, q in (("p50", 0.5), ("p99", 0.99), ("max", 1.0))
        },
        "latency_samples": sum(hist.values()),
        # trades received per second by all clients (the sampled clients' count scaled to all):
        # the measure that batching does not change, unlike frames/s
        "trades_delivered_per_s": round(sum(hist.values()) / max(1, len(samples)) * args.clients / seconds)
        if seconds > 0
        else 0,
        "gap_check": gaps(redis_url, samples, kind == "naive"),
        "closed": dict(closed),
        "gateway_cpu_pct": round(cpu * 100),
        "gateway_peak_rss_mb": round(peak, 1),
        "client_cpu_pct": round(sum(r["cpu_s"] for r in results) / seconds * 100) if seconds > 0 else 0,
        "rest": rest_r,
    }


def measure_idle(kind: str, env: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    server = start_server(kind, port, env)
    kids = Children()
    try:
        wait_port(port, server)
        time.sleep(1.0)
        base = rss_mb(server.pid, "VmRSS")
        procs, first = [], 0
        started = time.monotonic()
        for n in split(args.idle, max(args.procs, args.idle // 2500 + 1)):
            procs.append(kids.spawn(["--client", str(port), str(first), str(n), "idle"], env))
            first += n
        for p in procs:
            kids.ready(p, 300)
        opened_s = time.monotonic() - started
        time.sleep(2.0)
        rss = rss_mb(server.pid, "VmRSS")
        alive = server.poll() is None
        for p in procs:
            kids.say(p, "go 0")
            kids.say(p, "stop")
        closed: Counter[str] = Counter()
        for p in procs:
            closed.update(kids.result(p, 60)["closed"])
    finally:
        kids.end()
        stop(server)
    return {
        "server": kind,
        "idle_sockets": args.idle,
        "open_s": round(opened_s, 1),
        "rss_before_mb": round(base, 1),
        "rss_mb": round(rss, 1),
        "kb_per_socket": round((rss - base) * 1024 / args.idle, 1),
        "alive": alive,
        "closed_early": dict(closed),
    }


def main() -> None:
    raise_nofile()
    role = sys.argv[1] if len(sys.argv) > 1 else ""
    if role == "--client":
        port, first, n, mode = sys.argv[2:6]
        asyncio.run(run_clients(int(port), int(first), int(n), mode))
        return
    if role == "--ingest":
        asyncio.run(run_ingest(sys.argv[2], float(sys.argv[3]), float(sys.argv[4])))
        return
    if role == "--rest":
        asyncio.run(run_rest(int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--rate", type=float, default=5000, help="trades/s accepted, over all symbols")
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--procs", type=int, default=2, help="client processes")
    ap.add_argument("--servers", default="uvicorn,naive", help="of uvicorn, granian, naive")
    ap.add_argument("--rest", type=float, default=1000, help="REST latest-quote requests/s (0: none)")
    ap.add_argument("--idle", type=int, default=0, help="also: RSS with this many idle sockets")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--profile", type=Path, help="a folder: py-spy the server during each run")
    args = ap.parse_args()
    if not (0 < args.clients <= 5000 and 0 < args.seconds <= 120 and 0 < args.rate <= 50_000):
        raise SystemExit("--clients 1..5000, --seconds up to 120, --rate up to 50000")
    if not (0 <= args.idle <= 12_000 and 1 <= args.procs <= 8 and 0 <= args.rest <= 5000):
        raise SystemExit("--idle 0..12000, --procs 1..8, --rest 0..5000")
    from smarttrade.redis.embedded import EmbeddedRedis, find_redis_binary

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fanout-bench-") as tmp:
        server = EmbeddedRedis(
            data_dir=Path(tmp), config={"save": "", "appendonly": "no", "maxclients": "20000"},
            binary=find_redis_binary(),
        )  # fmt: skip
        server.start()
        env = {
            **os.environ,
            "REDIS_URL": server.url,
            "SMARTTRADE_GATEWAY_SECRET": SECRET,
            "PYTHONPATH": str(ROOT),
        }
        try:
            import redis

            for kind in args.servers.split(","):
                with redis.Redis(port=server.port) as r:
                    r.flushall()  # our own server, started above
                rows.append(measure(kind, server.url, env, args))
                print(json.dumps(rows[-1]), flush=True)
            if args.idle:
                for kind in [k for k in args.servers.split(",") if k != "naive"]:
                    rows.append(measure_idle(kind, env, args))
                    print(json.dumps(rows[-1]), flush=True)
        finally:
            server.stop(save=False)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
