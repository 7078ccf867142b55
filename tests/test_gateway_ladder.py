"""The fan-out under load: batches of waiting messages (one frame of each kind for many commits)
and the slow-client ladder (a socket behind goes to a slower batched rate, never losing a trade,
and back; closed with 4008 only past that). Network-free where the behaviour is the outbox's own,
end to end through a real gateway and redis-server where it is the socket's."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import redis
from websockets.asyncio.client import connect

from smarttrade.gateway import hub as hubmod
from smarttrade.gateway.hub import Client, Frames, Outbox, writer
from smarttrade.models import Trade, TradeMessage
from smarttrade.redis.embedded import EmbeddedRedis
from smarttrade.redis.topology import Topology
from smarttrade.settings import Settings
from smarttrade.stores import Stores
from smarttrade.symbols import spec_for
from tests.test_gateway_fanout import small_socket
from tests.test_gateway_ws import Gateway, feed, gateway, stream_ids, subscribe

__all__ = ["gateway"]  # the fixture, shared

QUOTE = {"symbol": "WIN", "price": 1.0, "volume": 1.0, "timestamp": 1, "bid": None, "ask": None}


def message(i: int, n: int = 2) -> TradeMessage:
    trades = [
        Trade(price=120_000 + 5 * ((i + k) % 7), volume=1 + k, side="buy" if (i + k) % 2 else "sell", time=i)
        for k in range(n)
    ]
    quote = {**QUOTE, "price": float(i)}
    return TradeMessage(
        symbol="WIN", seq=i, quote=quote, trades=trades, cancelled=[], offset=f"{1000 + i}-0", epoch="e1"
    )


def commits(frames: list[dict[str, Any]]) -> list[str]:
    """Every commit the trades frames carry, in order (a batch lists its ``offsets``)."""
    out: list[str] = []
    for f in frames:
        if f["type"] == "trades":
            out += f.get("offsets") or [f["offset"]]
    return out


def summed(frames: list[dict[str, Any]]) -> dict[int, list[float]]:
    merged: dict[int, list[float]] = {}
    for f in frames:
        if f["type"] == "footprint":
            for lv in f["levels"]:
                entry = merged.setdefault(lv["level"], [0, 0])
                entry[0] += lv["buy"]
                entry[1] += lv["sell"]
    return {lv: v for lv, v in merged.items() if v != [0, 0]}


def expected_footprint(msgs: list[TradeMessage]) -> dict[int, list[float]]:
    spec = spec_for("WIN")
    out: dict[int, list[float]] = {}
    for m in msgs:
        for t in m.trades:
            entry = out.setdefault(spec.level(t.price), [0, 0])
            entry[0 if t.side == "buy" else 1] += t.volume
    return out


def test_a_batch_is_one_frame_of_each_kind_for_all_its_commits() -> None:
    msgs = [message(i) for i in range(5)]
    frames = Frames(msgs, spec_for("WIN"))
    trades = json.loads(frames.trades() or "")
    assert trades["offsets"] == [m.offset for m in msgs] and trades["offset"] == msgs[-1].offset
    assert trades["seq"] == 4 and len(trades["trades"]) == 10
    assert [t["time"] for t in trades["trades"]] == [i for i in range(5) for _ in range(2)]
    assert json.loads(frames.quote() or "")["quote"]["price"] == 4.0
    fp = json.loads((frames.footprint() or hubmod.FootprintDelta("", "", "", {})).frame or "")
    assert summed([fp]) == expected_footprint(msgs) and fp["offset"] == msgs[-1].offset
    one = json.loads(Frames(msgs[:1], spec_for("WIN")).trades() or "")
    assert "offsets" not in one and one["offset"] == msgs[0].offset  # one commit: the plain frame


async def test_a_slow_socket_is_batched_never_loses_a_trade_and_comes_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hubmod, "SLOW_HOLD_S", 0.6)
    client = Client("u", "s")
    client.subs["WIN"] = {"trades", "footprint", "quotes"}
    got: list[dict[str, Any]] = []

    async def slow_send(frame: str) -> None:  # a reader that takes 1 ms a frame
        got.append(json.loads(frame))
        await asyncio.sleep(0.001)

    task = asyncio.create_task(writer(client, slow_send, {"frames_sent": 0}))
    msgs = [message(i) for i in range(3000)]
    for k in range(0, len(msgs), 100):  # 3,000 commits in ~0.3 s: far faster than it reads
        for m in msgs[k : k + 100]:
            client.deliver(Frames([m], spec_for("WIN")))
        await asyncio.sleep(0.01)
    assert client.outbox.slow and client.outbox.failed is None
    for _ in range(200):  # bounded: until it has caught up and is back at the live rate
        if not client.outbox.slow and not len(client.outbox):
            break
        await asyncio.sleep(0.05)
    task.cancel()
    notices = [f for f in got if f["type"] == "slow"]
    assert [n["rate_ms"] for n in notices] == [250, 0] and "batched" in notices[0]["reason"]
    assert commits(got) == [m.offset for m in msgs]  # every commit once, in order
    sent = [t for f in got if f["type"] == "trades" for t in f["trades"]]
    assert len(sent) == 6000 and [t["time"] for t in sent] == [t.time for m in msgs for t in m.trades]
    assert summed(got) == expected_footprint(msgs)
    assert len([f for f in got if f["type"] == "trades"]) < 1500  # batched: far fewer frames
    assert [f for f in got if f["type"] == "quote"][-1]["quote"]["price"] == 2999.0


def test_a_socket_behind_even_at_the_slower_rate_is_closed() -> None:
    client = Client("u", "s")
    client.subs["WIN"] = {"trades"}
    for i in range(20_000):  # nobody sends: it only piles up
        client.deliver(Frames([message(i)], spec_for("WIN")))
        if client.outbox.failed:
            break
    out = client.outbox
    assert out.slowed == 1 and out.failed and out.failed.startswith("too slow")
    assert "slower rate" in out.failed and len(out) == 0


def test_an_undroppable_frame_seals_the_open_batch() -> None:
    out = Outbox()
    out.slow = True
    spec = spec_for("WIN")
    out.trades_batch(spec, [message(1)])
    out.trades_batch(spec, [message(2)])  # same batch
    out.strict('{"type":"snapshot"}')
    out.trades_batch(spec, [message(3)])  # after the snapshot: a new batch
    frames = [json.loads(f) for f in iter(out.pop, None)]
    assert [f["type"] for f in frames] == ["trades", "snapshot", "trades"]
    assert frames[0]["offsets"] == ["1001-0", "1002-0"] and frames[2]["offset"] == "1003-0"
    assert out.batched_trades == 0


async def test_many_sockets_get_batches_of_what_was_waiting(gateway: Gateway) -> None:
    hub = gateway.hub
    clients = [hub.register(f"u{i}", f"s{i}") for i in range(hubmod.BATCH_MIN_SOCKETS)]
    for c in clients:
        c.subs["WIN"] = {"trades", "footprint", "quotes"}
        hub.by_symbol["WIN"].add(c)
    msgs = [message(i) for i in range(10)]
    try:
        hub._fan_out("WIN", msgs)
        for c in clients:
            frames = [json.loads(f) for f in iter(c.outbox.pop, None)]
            assert [f["type"] for f in frames] == ["trades", "quote", "footprint"]
            assert commits(frames) == [m.offset for m in msgs] and summed(frames) == expected_footprint(msgs)
        assert hub.stats()["batched"] == 10
        hub._fan_out("WIN", msgs)  # already sent: nothing twice
        assert all(len(c.outbox) == 0 for c in clients)
    finally:
        for c in clients:
            hub.unregister(c)


@pytest.mark.one_binary
async def test_a_deliberately_slow_reader_gets_the_notice_and_exact_trades_and_footprint(
    gateway: Gateway,
    server: EmbeddedRedis,
    pools: Topology,
    settings: Settings,
    stores: Stores,
    tmp_path: Path,
) -> None:
    sock = small_socket(gateway.port)
    frames: list[dict[str, Any]] = []
    async with connect(gateway.url(), sock=sock, max_queue=1) as ws:
        head = await subscribe(ws, ["WIN"], ["trades", "footprint"])

        async def slow_reader() -> None:  # 3 ms a frame, bounded
            while len(frames) < 100_000:
                try:
                    frames.append(json.loads(await asyncio.wait_for(ws.recv(), 3.0)))
                except TimeoutError:
                    return
                await asyncio.sleep(0.003)

        reading = asyncio.create_task(slow_reader())
        await feed(pools, settings, tmp_path, 60_000, seed=21, chunk=10)
        await asyncio.wait_for(reading, 60)
    assert gateway.hub.stats()["slowed"] >= 1 and gateway.hub.stats()["slow_closed"] == 0
    assert [f["rate_ms"] for f in frames if f["type"] == "slow"][:1] == [250]
    assert commits(frames) == stream_ids(server, "WIN")  # every commit once, in order
    with redis.Redis(port=server.port, db=1) as r:
        published = sum(len(json.loads(e[b"trades"])) for _, e in r.xrange("stream:trades:WIN"))
    assert sum(len(f["trades"]) for f in frames if f["type"] == "trades") == published == 60_000
    ladder = {lv: [fp.buy_volume, fp.sell_volume] for lv, fp in await stores.footprint.ladder("WIN")}
    assert summed(head + frames) == ladder
