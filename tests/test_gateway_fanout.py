"""Fan-out and recovery through a real gateway: resume by offset with no gap and no duplicate,
snapshots when the history is gone, slow sockets (merged footprint stays exact), a socket that never
reads stays bounded, and the hub's public API (listeners, channels, send_to_user, probe, stats)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time
from pathlib import Path

import redis
from websockets.asyncio.client import connect

from smarttrade.gateway.hub import BARS_EVERY_S, MAX_STRICT_BYTES, FootprintDelta, Outbox
from smarttrade.models import TradeMessage
from smarttrade.redis.embedded import EmbeddedRedis
from smarttrade.redis.topology import Topology
from smarttrade.settings import Settings
from smarttrade.stores import Stores
from tests.test_gateway_ws import (
    Gateway,
    drain,
    feed,
    gateway,
    last_id,
    recv,
    recv_until,
    stream_ids,
    subscribe,
)

__all__ = ["gateway"]  # the fixture, shared


def trade_offsets(frames: list[dict]) -> list[str]:
    return [f["offset"] for f in frames if f["type"] == "trades"]


async def test_resume_by_offset_no_gap_no_duplicate(
    gateway: Gateway, server: EmbeddedRedis, pools: Topology, settings: Settings, tmp_path: Path
) -> None:
    async with connect(gateway.url()) as ws:
        await subscribe(ws, ["WIN"], ["trades"])
        await feed(pools, settings, tmp_path, 1500, seed=1)
        first = trade_offsets(await drain(ws, last=last_id(server)))
    assert first
    epoch = await _epoch(server, "WIN")
    await feed(pools, settings, tmp_path, 1500, seed=2)  # missed while away
    live = asyncio.create_task(feed(pools, settings, tmp_path, 1500, seed=3))  # and during the resume
    async with connect(gateway.url()) as ws:
        since = {"WIN": {"offset": first[-1], "epoch": epoch}}
        head = await subscribe(ws, ["WIN"], ["trades"], since=since)
        await live
        second = trade_offsets(head) + trade_offsets(await drain(ws))  # the tail may be in head
    ack = head[-1]
    assert ack["type"] == "subscribed" and ack["recovered"] is True and ack["replayed"] > 0
    assert not [f for f in head if f["type"] == "snapshot"]
    assert first + second == stream_ids(server, "WIN")  # every commit once, in order


async def _epoch(server: EmbeddedRedis, symbol: str) -> str:
    with redis.Redis(port=server.port, db=1, decode_responses=True) as r:
        return r.get(f"stream:epoch:{symbol}") or ""


async def test_changed_epoch_or_trimmed_history_gives_a_snapshot(
    gateway: Gateway,
    server: EmbeddedRedis,
    pools: Topology,
    settings: Settings,
    stores: Stores,
    tmp_path: Path,
) -> None:
    await feed(pools, settings, tmp_path, 1000, seed=1)
    ids = stream_ids(server, "WIN")
    epoch = await _epoch(server, "WIN")
    ladder = [
        {"level": lv, "price": fp.price, "buy": fp.buy_volume, "sell": fp.sell_volume}
        for lv, fp in await stores.footprint.ladder("WIN")
    ]
    async with connect(gateway.url()) as ws:
        frames = await subscribe(ws, ["WIN"], ["trades"], since={"WIN": {"offset": ids[0], "epoch": "gone"}})
    snap = frames[0]
    assert snap["type"] == "snapshot" and snap["recovered"] is False and "epoch" in snap["reason"]
    assert (snap["offset"], snap["epoch"], snap["consistent"]) == (ids[-1], epoch, True)
    assert snap["ladder"] == ladder and snap["quote"]["symbol"] == "WIN"
    assert set(snap["bars"]) == {"1m", "5m", "15m"}
    with redis.Redis(port=server.port, db=1) as r:
        r.xtrim("stream:trades:WIN", maxlen=2)  # the client's offset is trimmed away
    async with connect(gateway.url()) as ws:
        frames = await subscribe(ws, ["WIN"], ["trades"], since={"WIN": {"offset": ids[0], "epoch": epoch}})
    assert frames[0]["type"] == "snapshot" and frames[0]["recovered"] is False
    assert frames[-1]["recovered"] is False
    async with connect(gateway.url()) as ws:  # the newest offset still resumes: nothing to replay
        frames = await subscribe(ws, ["WIN"], ["trades"], since={"WIN": {"offset": ids[-1], "epoch": epoch}})
    assert [f["type"] for f in frames] == ["subscribed"] and frames[0]["replayed"] == 0


def small_socket(port: int) -> socket.socket:
    """A client socket with a tiny receive buffer, so a socket that does not read backs up fast."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    return s


async def test_a_slow_reader_ends_with_the_exact_footprint(
    gateway: Gateway,
    server: EmbeddedRedis,
    pools: Topology,
    settings: Settings,
    stores: Stores,
    tmp_path: Path,
) -> None:
    sock = small_socket(gateway.port)
    async with connect(gateway.url(), sock=sock, max_queue=1) as ws:
        await subscribe(ws, ["WIN"], ["footprint", "quotes"])
        await feed(pools, settings, tmp_path, 30_000, seed=4, chunk=20)  # while the client reads nothing
        frames = await drain(ws, quiet=1.5)
    commits = len(stream_ids(server, "WIN"))
    fps = [f for f in frames if f["type"] == "footprint"]
    # merged while it was behind, unless the kernel's buffers took it all (a quiet machine):
    # the merging itself is tested without a network below; what must hold is the sum
    assert 0 < len(fps) <= commits
    merged: dict[int, list[float]] = {}
    for f in fps:
        for lv in f["levels"]:
            entry = merged.setdefault(lv["level"], [0, 0])
            entry[0] += lv["buy"]
            entry[1] += lv["sell"]
    ladder = {lv: [fp.buy_volume, fp.sell_volume] for lv, fp in await stores.footprint.ladder("WIN")}
    assert {lv: v for lv, v in merged.items() if v != [0, 0]} == ladder
    quotes = [f for f in frames if f["type"] == "quote"]
    assert quotes and len(quotes) <= commits and quotes[-1]["offset"] == stream_ids(server, "WIN")[-1]


def test_what_one_socket_has_not_been_sent_is_merged_or_conflated() -> None:
    box = Outbox()
    box.footprint(FootprintDelta("WIN", "1-0", "e", {10: [1, 0], 11: [0, 2]}))
    box.latest(("quote", "WIN"), "q1")
    box.footprint(FootprintDelta("WIN", "2-0", "e", {10: [3, 1]}))
    box.latest(("quote", "WIN"), "q2")
    box.strict("t1")
    box.strict("t2")
    assert len(box) == 4  # one footprint, one quote, both trades frames
    pending = box.items[("footprint", "WIN")]
    assert pending.levels == {10: [4, 1], 11: [0, 2]} and pending.offset == "2-0"
    assert box.items[("quote", "WIN")] == "q2"
    assert box.strict_frames == 2 and box.strict_bytes == 4


def _masked_text(payload: bytes) -> bytes:
    """One client text frame (clients must mask), for a raw socket."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big"))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def test_a_socket_that_never_reads_stays_bounded_then_is_closed(
    gateway: Gateway, pools: Topology, settings: Settings, tmp_path: Path
) -> None:
    sock = small_socket(gateway.port)
    key = base64.b64encode(os.urandom(16)).decode()
    token = gateway.tokens.create("lazy")
    sock.sendall(
        f"GET /ws?token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:  # the handshake's answer; after it, this socket reads nothing
        response += await asyncio.to_thread(sock.recv, 1)
    assert response.startswith(b"HTTP/1.1 101")
    sub = {"type": "subscribe", "symbols": ["WIN"], "channels": ["trades", "quotes", "footprint"]}
    sock.sendall(_masked_text(json.dumps(sub).encode()))
    for _ in range(100):
        if gateway.hub.stats()["clients"] == 1:
            break
        await asyncio.sleep(0.02)
    try:
        for seed in range(10, 20):  # bounded: at most 10 x 30k trades
            await feed(pools, settings, tmp_path, 30_000, seed=seed, chunk=200)
            if gateway.hub.stats()["clients"] == 0:
                break
        for _ in range(100):
            if gateway.hub.stats()["clients"] == 0:
                break
            await asyncio.sleep(0.05)
    finally:
        sock.close()
    stats = gateway.hub.stats()
    assert stats["clients"] == 0 and stats["slow_closed"] == 1
    assert 0 < stats["peak_queued_bytes"] <= MAX_STRICT_BYTES


async def test_hub_api_listeners_channels_user_frames_probe_stats(
    gateway: Gateway, server: EmbeddedRedis, pools: Topology, settings: Settings, tmp_path: Path
) -> None:
    hub = gateway.hub
    seen: list[tuple[str, TradeMessage]] = []
    got: list[bytes] = []

    async def listener(symbol: str, msg: TradeMessage) -> None:
        seen.append((symbol, msg))

    hub.add_trade_listener(listener)
    hub.add_channel("alerts:fired", got.append)
    assert 0 < await hub.probe(2.0) < 2.0
    async with connect(gateway.url("dora")) as ws, connect(gateway.url("dora")) as other:
        await subscribe(ws, ["WIN"], ["alerts"])
        await subscribe(other, ["WIN"], ["trades"])  # no alerts channel: not sent there
        assert hub.send_to_user("dora", b'{"type":"alert","symbol":"WIN","price":1}') == 1
        assert (await recv(ws))["type"] == "alert"
        with redis.Redis(port=server.port) as r:
            r.publish("alerts:fired", b"hello")
        await feed(pools, settings, tmp_path, 200, seed=5)
        await asyncio.sleep(0.3)
        assert [f["type"] for f in await drain(ws, quiet=0.3)] == []  # alerts only: no market frames
        assert trade_offsets(await drain(other, quiet=0.3)) == stream_ids(server, "WIN")
        stats = hub.stats()
        assert stats["clients"] == 2 and stats["messages_in"] >= len(seen) > 0
    assert got == [b"hello"]
    assert [m.offset for _, m in seen] == stream_ids(server, "WIN") and seen[0][0] == "WIN"
    assert {"queued_frames", "queued_bytes", "frames_sent", "slow_closed", "reader_errors"} <= set(stats)


async def test_unsubscribe_stops_frames(
    gateway: Gateway, server: EmbeddedRedis, pools: Topology, settings: Settings, tmp_path: Path
) -> None:
    async with connect(gateway.url()) as ws:
        await subscribe(ws, ["WIN"], ["trades"])
        await ws.send(json.dumps({"type": "unsubscribe", "symbols": ["WIN"]}))
        assert (await recv_until(ws, "unsubscribed"))[-1]["symbols"] == ["WIN"]
        await feed(pools, settings, tmp_path, 300, seed=6)
        assert await drain(ws, quiet=0.5) == []


async def test_a_reader_reconnect_catches_up_by_offset(
    gateway: Gateway, server: EmbeddedRedis, pools: Topology, settings: Settings, tmp_path: Path
) -> None:
    async with connect(gateway.url()) as ws:
        await subscribe(ws, ["WIN"], ["trades"])
        await feed(pools, settings, tmp_path, 300, seed=7)
        with redis.Redis(port=server.port) as r:  # our test server: drop the hub's pub/sub connection
            assert r.client_kill_filter(_type="pubsub") >= 1
        await feed(pools, settings, tmp_path, 600, seed=8)  # partly while the reader is away
        frames = await drain(ws, quiet=1.5, last=last_id(server))
    assert gateway.hub.stats()["resyncs"] >= 1
    assert trade_offsets(frames) == stream_ids(server, "WIN")  # no gap, no duplicate


async def test_a_new_epoch_while_live_gives_a_snapshot(
    gateway: Gateway, server: EmbeddedRedis, pools: Topology, settings: Settings, tmp_path: Path
) -> None:
    async with connect(gateway.url()) as ws:
        await subscribe(ws, ["WIN"], ["trades"])
        await feed(pools, settings, tmp_path, 300, seed=7)
        before = await _epoch(server, "WIN")
        with redis.Redis(port=server.port, db=1) as r:  # the history is lost (as a restart would)
            r.delete("stream:trades:WIN", "stream:epoch:WIN")
        await feed(pools, settings, tmp_path, 300, seed=8)
        frames = await drain(ws, quiet=1.5)  # the last commits may be in the snapshot
    after = await _epoch(server, "WIN")
    assert after and after != before
    snaps = [i for i, f in enumerate(frames) if f["type"] == "snapshot"]
    assert len(snaps) == 1
    snap = frames[snaps[0]]
    assert snap["recovered"] is False and snap["epoch"] == after and "epoch" in snap["reason"]
    old = [f for f in frames[: snaps[0]] if f["type"] == "trades"]
    new = [f for f in frames[snaps[0] :] if f["type"] == "trades"]
    assert {f["epoch"] for f in old} == {before} and {f["epoch"] for f in new} <= {after}
    ids = stream_ids(server, "WIN")
    assert [f["offset"] for f in new] == [i for i in ids if i > snap["offset"]]


async def test_bars_and_indicators_frames_are_conflated_per_symbol(
    gateway: Gateway, pools: Topology, settings: Settings, tmp_path: Path
) -> None:
    async with connect(gateway.url()) as ws:
        await subscribe(ws, ["WIN"], ["bars", "indicators"])
        started = time.monotonic()
        await feed(pools, settings, tmp_path, 3000, seed=11)
        took = time.monotonic() - started
        frames = await drain(ws, quiet=1.5)
    bars = [f for f in frames if f["type"] == "bar"]
    assert {f["timeframe"] for f in bars} == {"1m", "5m", "15m"}
    assert all(
        f["symbol"] == "WIN" and f["offset"] and {"open", "close", "start"} <= set(f["bar"]) for f in bars
    )
    assert len(bars) <= 3 * (took / BARS_EVERY_S + 2)  # one read per 0.5 s at most, 3 timeframes
    indicators = [f for f in frames if f["type"] == "indicators"]
    assert indicators and set(indicators[-1]["values"]) <= {"1m", "5m", "15m"} and indicators[-1]["values"]
    assert not [f for f in frames if f["type"] in ("trades", "quote", "footprint")]
