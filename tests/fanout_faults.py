"""What the fan-out fault tests share (cluster, sentinel, several gateways): a gateway of the
test's own, a feed that keeps trickling through a failover, a WebSocket reader that keeps every
frame, the /healthz watch across a fault and the final check that the socket got every offset of
the stream exactly once. A plain module (not a test file): ``from tests.fanout_faults import ...``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection

from smarttrade.gateway.app import create_app
from smarttrade.gateway.auth import Tokens
from smarttrade.gateway.context import GatewayContext
from smarttrade.gateway.protocol import offset_key
from smarttrade.gateway.server import Gateway
from smarttrade.keyspace import Store, trades_stream_key
from smarttrade.redis.topology import Topology
from smarttrade.settings import Settings
from smarttrade.stores import Stores
from tests.test_gateway_ws import SECRET, feed, recv

log = logging.getLogger(__name__)
FEED_TRADES = 20  # trades per small feed of the trickle
FEED_TIMEOUT_S = 10.0  # one small feed; a longer one is the failover window: the next one retries


async def trickle(
    topo: Topology, settings: Settings, tmp: Path, stop: asyncio.Event, symbol: str = "WIN"
) -> int:
    """Small feeds one after another (a new source each) until ``stop``; one that fails (the
    failover window) is followed by the next, so the feed restarts by itself after a failover.
    Returns how many feeds were started."""
    seed = 0
    while not stop.is_set():
        seed += 1
        try:
            await asyncio.wait_for(
                feed(topo, settings, tmp, count=FEED_TRADES, seed=seed, chunk=2, symbols=(symbol,)),
                FEED_TIMEOUT_S,
            )
        except Exception as exc:  # the failover window: the next feed tries again
            log.warning("feed %d: %r", seed, exc)
        await asyncio.sleep(0.05)
    return seed


def offsets_of(frames: list[dict[str, Any]], symbol: str | None = None) -> list[str]:
    """Every commit offset the trades frames carried (a batch lists its ``offsets``), in order."""
    out: list[str] = []
    for f in frames:
        if f["type"] == "trades" and (symbol is None or f["symbol"] == symbol):
            out += f.get("offsets") or [f["offset"]]
    return out


@dataclass
class Served:
    """An in-process gateway on ``topo``: its server, base URL and token maker."""

    gateway: Gateway
    tokens: Tokens

    @property
    def url(self) -> str:
        return self.gateway.url

    def ws_url(self, user: str = "alice") -> str:
        return self.url.replace("http", "ws") + f"/ws?token={self.tokens.create(user)}"


@contextlib.asynccontextmanager
async def serve(topo: Topology, settings: Settings) -> AsyncIterator[Served]:
    tokens = Tokens(SECRET)
    gw = Gateway(create_app(GatewayContext(settings, topo, Stores(topo, settings), tokens)), "127.0.0.1", 0)
    await gw.start()
    try:
        yield Served(gw, tokens)
    finally:
        await gw.stop()


class Collector:
    """Reads a socket into ``frames`` in the background until closed (``aclose``)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.frames: list[dict[str, Any]] = []
        self._task = asyncio.create_task(self._run(ws))

    async def _run(self, ws: ClientConnection) -> None:
        while True:
            self.frames.append(await recv(ws, 120))

    def offsets(self) -> list[str]:
        return offsets_of(self.frames)

    async def wait_more(self, than: int, within_s: float) -> float:
        """Seconds until more than ``than`` offsets arrived; AssertionError past ``within_s``."""
        started = time.monotonic()
        while len(self.offsets()) <= than:
            assert time.monotonic() - started < within_s, f"no new trades within {within_s:g} s"
            await asyncio.sleep(0.1)
        return time.monotonic() - started

    async def aclose(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task


@dataclass
class HealthWatch:
    """Seconds after the fault until /healthz first said 503, and until 200 again; the 503's reason."""

    unhealthy_s: float
    healthy_s: float
    reason: str

    def figures(self) -> dict[str, object]:
        return {
            "unhealthy_s": round(self.unhealthy_s, 2),
            "healthy_s": round(self.healthy_s, 2),
            "reason": self.reason,
        }


async def watch_health(
    http: httpx.AsyncClient, since: float, unhealthy_within: float, healthy_within: float
) -> HealthWatch:
    """Poll /healthz after a fault at ``since`` (monotonic); AssertionError when the 503 or the
    200 after it misses its bound."""
    unhealthy_at = healthy_at = None
    reason = ""
    while time.monotonic() - since < unhealthy_within + healthy_within:
        with contextlib.suppress(httpx.HTTPError):
            reply = await http.get("/healthz")
            now = time.monotonic() - since
            if reply.status_code == 503 and unhealthy_at is None:
                unhealthy_at, reason = now, reply.json().get("message", "")
            if reply.status_code == 200 and unhealthy_at is not None:
                healthy_at = now
                break
        await asyncio.sleep(0.2)
    assert unhealthy_at is not None and unhealthy_at <= unhealthy_within, f"503 after {unhealthy_at} s"
    assert healthy_at is not None and healthy_at <= healthy_within, f"200 again after {healthy_at} s"
    return HealthWatch(unhealthy_at, healthy_at, reason)


async def assert_every_offset_once(topo: Topology, symbol: str, got: list[str]) -> int:
    """Every offset of the symbol's stream from the socket's first one on reached it, none twice.
    Returns how many that is."""
    assert got, "the socket got no trades"
    assert len(got) == len(set(got)), f"{len(got) - len(set(got))} offsets were delivered twice"
    stream = [e[0].decode() for e in await topo.client(Store.ORDERFLOW).xrange(trades_stream_key(symbol))]
    first = offset_key(got[0])
    after = [o for o in stream if offset_key(o) >= first]
    missing = sorted(set(after) - set(got), key=offset_key)
    assert not missing, f"{len(missing)} offsets of the stream never reached the socket: {missing[:5]}"
    return len(after)


async def kill_under_feed(
    topo: Topology,
    settings: Settings,
    tmp_path: Path,
    symbol: str,
    kill: Callable[[], None],
    within_s: tuple[float, float, float],
    after_health: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """The fault scenario the cluster and sentinel fan-out tests share: a gateway, a socket
    subscribed to ``symbol`` while a trickle feeds it, ``kill()`` once trades flow, then /healthz
    503 and 200 again and new trades, each within its bound (``within_s``: unhealthy, healthy,
    new trades); every offset reached the socket once. Returns the measured figures."""
    from websockets.asyncio.client import connect

    from tests.test_gateway_ws import subscribe

    unhealthy_s, healthy_s, new_trades_within_s = within_s
    stop = asyncio.Event()
    feeder: asyncio.Task[None] | None = None
    try:
        async with serve(topo, settings) as gw, httpx.AsyncClient(base_url=gw.url, timeout=5) as http:
            assert (await http.get("/healthz")).status_code == 200
            async with connect(gw.ws_url()) as ws:
                await subscribe(ws, [symbol], ["trades"])
                feeder = asyncio.create_task(trickle(topo, settings, tmp_path, stop, symbol))
                got = Collector(ws)
                await got.wait_more(0, 10)
                kill()
                health = await watch_health(http, time.monotonic(), unhealthy_s, healthy_s)
                if after_health is not None:
                    after_health()
                new_trades_s = await got.wait_more(len(got.offsets()), new_trades_within_s)
                stop.set()
                await feeder
                await asyncio.sleep(1.5)  # the last commits reach the socket
                await got.aclose()
        delivered = got.offsets()
        stream = await assert_every_offset_once(topo, symbol, delivered)
        figures = {"new_trades_s": round(new_trades_s, 2), "delivered": len(delivered), "stream": stream}
        return {**health.figures(), **figures}
    finally:
        stop.set()
        if feeder is not None:
            await asyncio.gather(feeder, return_exceptions=True)
