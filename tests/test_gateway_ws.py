"""The WebSocket /ws end to end: a real uvicorn server on a free loopback port in this process, real
`websockets` clients, a real redis-server, trades from the ingest engine. Helpers here are shared
by test_gateway_fanout.py and test_gateway_sessions.py."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import redis
import uvicorn
import websockets
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect

from smarttrade.feeds.synthetic import SyntheticFeed
from smarttrade.gateway.app import create_app
from smarttrade.gateway.auth import Tokens
from smarttrade.gateway.context import GatewayContext
from smarttrade.gateway.hub import Hub
from smarttrade.ingest.run import ChunkFeed, run_feed
from smarttrade.redis.embedded import EmbeddedRedis
from smarttrade.redis.topology import Topology
from smarttrade.settings import Settings
from smarttrade.stores import Stores

SECRET = "test-secret-" + "x" * 40
DAY = date(2025, 11, 24)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Gateway:
    ctx: GatewayContext
    port: int
    tokens: Tokens

    @property
    def hub(self) -> Hub:
        assert self.ctx.hub is not None
        return self.ctx.hub

    def url(self, user: str = "alice") -> str:
        return f"ws://127.0.0.1:{self.port}/ws?token={self.tokens.create(user)}"


@pytest.fixture
async def gateway(
    server: EmbeddedRedis, settings: Settings, pools: Topology, stores: Stores
) -> AsyncIterator[Gateway]:
    with redis.Redis(port=server.port) as r:  # our own test server: the profile's notifications
        r.config_set("notify-keyspace-events", "Ex")
    tokens = Tokens(SECRET)
    ctx = GatewayContext(settings, pools, stores, tokens)
    port = free_port()
    config = uvicorn.Config(
        create_app(ctx),
        host="127.0.0.1",
        port=port,
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        log_level="warning",
        lifespan="on",
    )
    srv = uvicorn.Server(config)
    task = asyncio.create_task(srv.serve())
    for _ in range(200):
        if srv.started:
            break
        await asyncio.sleep(0.025)
    assert srv.started, "uvicorn did not start"
    try:
        yield Gateway(ctx, port, tokens)
    finally:
        srv.should_exit = True
        await asyncio.wait_for(task, 15)


async def feed(pools: Topology, settings: Settings, tmp: Path, count: int, seed: int = 1, chunk: int = 40,
               symbols: tuple[str, ...] = ("WIN",)) -> None:  # fmt: skip
    """Ingest ``count`` synthetic trades in small chunks (many commits, so many messages)."""
    syn = SyntheticFeed(list(symbols), seed=seed, count=count, start_day=DAY, chunk=chunk)
    source = ChunkFeed(syn.chunks, f"test-{seed}", total=count)
    await run_feed(pools, settings, source, tmp / f"dead-{seed}.jsonl")


async def recv(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def recv_until(ws: ClientConnection, want: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Frames up to and including the first of type ``want``."""
    out: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        frame = await recv(ws, max(0.01, end - loop.time()))
        out.append(frame)
        if frame["type"] == want:
            return out


async def drain(
    ws: ClientConnection,
    quiet: float = 1.0,
    limit: int = 200_000,
    last: str | None = None,
    wait: float = 30.0,
) -> list[dict[str, Any]]:
    """Every frame until none came for ``quiet`` seconds; with ``last``, not before the trades frame
    of that offset came (or ``wait`` passed): a loaded machine can pause longer than ``quiet``.
    Only for a live tail: an offset a catch-up or a snapshot covered never comes as a frame."""
    out: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + wait
    seen = last is None
    while len(out) < limit:
        try:
            frame = await recv(ws, quiet if seen else max(quiet, end - loop.time()))
        except TimeoutError:
            break
        out.append(frame)
        seen = seen or (frame["type"] == "trades" and frame.get("offset") == last)
    return out


def last_id(server: EmbeddedRedis, symbol: str = "WIN") -> str:
    return stream_ids(server, symbol)[-1]


async def subscribe(ws: ClientConnection, symbols: list[str], channels: list[str], **extra: Any) -> list:
    await ws.send(json.dumps({"type": "subscribe", "symbols": symbols, "channels": channels, **extra}))
    frames: list[dict] = []
    for _ in symbols:
        frames += await recv_until(ws, "subscribed")
    return frames


def stream_ids(server: EmbeddedRedis, symbol: str) -> list[str]:
    with redis.Redis(port=server.port, db=1, decode_responses=True) as r:
        return [eid for eid, _ in r.xrange(f"stream:trades:{symbol}")]


async def pong(ws: ClientConnection, ident: int) -> None:
    await ws.send(json.dumps({"type": "ping", "id": ident}))
    frames = await recv_until(ws, "pong")
    assert frames[-1]["id"] == ident


# --- auth -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "garbage", Tokens("another-secret-" + "y" * 40).create("bob")])
async def test_no_or_bad_token_closes_4401(gateway: Gateway, token: str | None) -> None:
    url = f"ws://127.0.0.1:{gateway.port}/ws" + (f"?token={token}" if token else "")
    async with connect(url) as ws:
        with pytest.raises(websockets.ConnectionClosed) as info:
            await recv(ws)
    assert info.value.rcvd is not None and info.value.rcvd.code == 4401
    assert gateway.hub.stats()["clients"] == 0


async def test_bearer_header_is_accepted(gateway: Gateway) -> None:
    headers = {"Authorization": f"Bearer {gateway.tokens.create('carol')}"}
    async with connect(f"ws://127.0.0.1:{gateway.port}/ws", additional_headers=headers) as ws:
        await pong(ws, 7)


# --- frames ---------------------------------------------------------------------------------------


async def test_subscribe_receives_trades_quotes_and_footprint(
    gateway: Gateway,
    server: EmbeddedRedis,
    pools: Topology,
    settings: Settings,
    stores: Stores,
    tmp_path: Path,
) -> None:
    async with connect(gateway.url()) as ws:
        first = await subscribe(ws, ["WIN"], ["quotes", "trades", "footprint"])
        snap = first[0]
        assert snap["type"] == "snapshot" and snap["recovered"] is True and snap["ladder"] == []
        assert first[-1] == {**first[-1], "type": "subscribed", "symbol": "WIN", "recovered": True}
        await feed(pools, settings, tmp_path, 3000)
        frames = await drain(ws, last=last_id(server))
    ids = stream_ids(server, "WIN")
    trades = [f for f in frames if f["type"] == "trades"]
    assert [f["offset"] for f in trades] == ids  # every commit, in order, once
    with redis.Redis(port=server.port, db=1) as r:
        published = sum(len(json.loads(e[b"trades"])) for _, e in r.xrange("stream:trades:WIN"))
    assert sum(len(f["trades"]) for f in trades) == published == 3000
    quotes = [f for f in frames if f["type"] == "quote"]
    assert quotes and quotes[-1]["quote"]["symbol"] == "WIN" and quotes[-1]["offset"] == ids[-1]
    latest = await stores.quotes.latest("WIN")
    assert latest is not None and quotes[-1]["quote"]["price"] == latest.price
    merged: dict[int, list[float]] = {}
    for f in frames:
        if f["type"] == "footprint":
            assert f["epoch"] == trades[0]["epoch"]
            for lv in f["levels"]:
                entry = merged.setdefault(lv["level"], [0, 0])
                entry[0] += lv["buy"]
                entry[1] += lv["sell"]
    ladder = {lv: [fp.buy_volume, fp.sell_volume] for lv, fp in await stores.footprint.ladder("WIN")}
    assert {lv: v for lv, v in merged.items() if v != [0, 0]} == ladder


async def test_unknown_symbol_is_an_error_frame(gateway: Gateway) -> None:
    async with connect(gateway.url()) as ws:
        await ws.send(json.dumps({"type": "subscribe", "symbols": ["NOPE1"], "channels": ["trades"]}))
        frame = await recv(ws)
        assert frame["type"] == "error" and frame["code"] == "unknown_symbol" and "NOPE1" in frame["message"]
        await pong(ws, 1)


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "code", "words"),
    [
        ("{not json", "malformed", "not JSON"),
        ('{"type":"launch"}', "unknown_type", "$.type"),
        ('{"type":"subscribe","symbols":["win"]}', "invalid", "$.symbols[0]"),
        ('{"type":"subscribe","symbols":["WIN"],"channels":["news"]}', "invalid", "$.channels[0]"),
        ('{"type":"subscribe","symbols":["WIN"],"since":{"WIN":"x"}}', "invalid", "$.since[...]"),
        ('{"type":"ping","id":1,"extra":2}', "invalid", "extra"),
        ("[]", "invalid", "object"),
        ("", "malformed", "not JSON"),
        ('{"type":"ping","id":"' + "a" * 70_000 + '"}', "too_large", "65536"),
    ],
)
async def test_bad_messages_get_an_error_frame_and_the_socket_stays_open(
    gateway: Gateway, message: str, code: str, words: str
) -> None:
    async with connect(gateway.url()) as ws:
        await ws.send(message)
        frame = await recv(ws)
        assert (frame["type"], frame["code"]) == ("error", code) and words in frame["message"], frame
        await pong(ws, 2)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
client_messages = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200),
    json_values.map(json.dumps),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["subscribe", "unsubscribe", "ping", "pong", "SUBSCRIBE"])},
        optional={"symbols": json_values, "channels": json_values, "since": json_values, "id": json_values},
    ).map(json.dumps),
)


@hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=st.lists(client_messages, min_size=1, max_size=8))
async def test_fuzzed_client_messages_never_break_the_socket(gateway: Gateway, messages: list) -> None:
    async with connect(gateway.url()) as ws:
        for m in messages:
            await ws.send(m)
        await ws.send(json.dumps({"type": "ping", "id": "end"}))
        frames: list[dict] = []
        while not frames or frames[-1] != {**frames[-1], "type": "pong", "id": "end"}:
            frames += await recv_until(ws, "pong")
        kinds = {f["type"] for f in frames}
        assert kinds <= {"error", "pong", "snapshot", "subscribed", "unsubscribed", "quote", "trades"}
        for f in frames:
            if f["type"] == "error":
                assert f["code"] and f["message"]


# --- limits ---------------------------------------------------------------------------------------


async def test_rate_limit_error_frames_then_close_1008(gateway: Gateway) -> None:
    async with connect(gateway.url()) as ws:
        for i in range(150):  # burst 100, then over
            await ws.send(json.dumps({"type": "ping", "id": i}))
        frames = await drain(ws, quiet=0.5)
        limited = [f for f in frames if f["type"] == "error" and f["code"] == "rate_limited"]
        pongs = [f for f in frames if f["type"] == "pong"]
        assert 100 <= len(pongs) < 150 and len(limited) == 150 - len(pongs)
        await asyncio.sleep(1.0)
        await pong(ws, 999)  # refilled: still open
        with pytest.raises(websockets.ConnectionClosed) as info:
            for i in range(2000):
                await ws.send(json.dumps({"type": "ping", "id": i}))
            await drain(ws, quiet=2)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1008


async def test_a_silent_socket_is_closed_4000(gateway: Gateway) -> None:
    gateway.hub.idle_timeout_s = 0.5
    async with connect(gateway.url(), ping_interval=None) as ws:
        with pytest.raises(websockets.ConnectionClosed) as info:
            await recv(ws, 5)
    assert info.value.rcvd is not None and info.value.rcvd.code == 4000
