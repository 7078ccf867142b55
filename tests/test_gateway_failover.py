"""Two gateways on one standalone Redis and one feed; kill -9 one (a subprocess, benchmarks/
run_gateway.py) while trades flow: its WebSocket clients reconnect to the other and resume by
offset (subscribe with ``since``, docs/protocol.md) and get every offset of the stream exactly once
across both sockets; the survivor cleans the dead gateway's sessions up when its gateway:alive:ID
expires (the expired-key event; the sweep is tests/test_gateway_sessions.py's).

Bounds: a client is resumed (its ``subscribed`` reply) within RESUME_WITHIN_S of the kill and gets
new trades within NEW_TRADES_WITHIN_S after that; clean-up within GATEWAY_ALIVE_TTL + 3 s.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from smarttrade.keyspace import GATEWAY_ALIVE_TTL
from smarttrade.redis.embedded import EmbeddedRedis
from smarttrade.redis.topology import Topology
from smarttrade.settings import Settings
from tests.fanout_faults import Collector, assert_every_offset_once, offsets_of, trickle
from tests.test_gateway_sessions import connected_on, sessions_db, start_gateway, until
from tests.test_gateway_ws import Gateway, gateway, subscribe

__all__ = ["gateway"]
pytestmark = [pytest.mark.topology, pytest.mark.one_binary]
SYMBOL = "WIN"
USERS = ("ann", "ben", "cid")
VICTIM = "gw-victim"
RESUME_WITHIN_S = 5.0
NEW_TRADES_WITHIN_S = 10.0


def resume_point(frames: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``since`` of a client's last trades frame (what a client keeps to resume)."""
    last = next(f for f in reversed(frames) if f["type"] == "trades")
    return {SYMBOL: {"offset": last["offset"], "epoch": last["epoch"]}}


async def test_kill9_gateway_clients_resume_on_the_other(
    gateway: Gateway, server: EmbeddedRedis, pools: Topology, settings: Settings, tmp_path: Path
) -> None:
    r = sessions_db(server)
    proc, port = start_gateway(server, VICTIM)
    stop = asyncio.Event()
    feeder: asyncio.Task | None = None
    old: dict[str, Collector] = {}
    new: dict[str, tuple[list[dict[str, Any]], Collector]] = {}
    sockets: list[ClientConnection] = []
    try:
        for user in USERS:
            ws = await connected_on(proc, port, gateway, user)
            sockets.append(ws)
            await subscribe(ws, [SYMBOL], ["trades"])
            old[user] = Collector(ws)
        assert r.scard(f"gateway:sockets:{VICTIM}") == len(USERS)
        feeder = asyncio.create_task(trickle(pools, settings, tmp_path, stop, SYMBOL))
        for c in old.values():
            await c.wait_more(0, 10)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed = time.monotonic()
        await asyncio.sleep(0.5)  # trades committed while the clients are away: the resume's part
        for user in USERS:
            await old[user].aclose()
            ws = await connect(gateway.url(user))
            sockets.append(ws)
            replies = await subscribe(ws, [SYMBOL], ["trades"], since=resume_point(old[user].frames))
            assert replies[-1]["recovered"] is True, replies[-1]
            new[user] = (replies, Collector(ws))
        resumed_s = time.monotonic() - killed
        assert resumed_s <= RESUME_WITHIN_S, f"resumed after {resumed_s:.1f} s"
        for _replies, c in new.values():
            await c.wait_more(len(c.offsets()), NEW_TRADES_WITHIN_S)
        stop.set()
        await feeder
        await asyncio.sleep(1.5)  # the last commits reach the sockets
        counts = {}
        for user in USERS:
            replies, c = new[user]
            await c.aclose()
            got = old[user].offsets() + offsets_of(replies) + c.offsets()
            counts[user] = (len(got), await assert_every_offset_once(pools, SYMBOL, got))

        # the dead gateway's sessions: the survivor hears gateway:alive:gw-victim expire
        await until(lambda: not r.exists(f"gateway:sockets:{VICTIM}"), GATEWAY_ALIVE_TTL + 10, step=0.2)
        cleaned_s = time.monotonic() - killed
        assert gateway.hub.presence.cleaned == 1 and cleaned_s <= GATEWAY_ALIVE_TTL + 3, cleaned_s
        for user in USERS:  # only the socket on the survivor is left
            assert len(r.hkeys(f"sockets:{user}")) == 1, r.hgetall(f"sockets:{user}")
            assert json.loads(r.get(f"session:{user}") or "{}").get("subscriptions") == [SYMBOL]
        print(
            json.dumps(
                {"resumed_s": round(resumed_s, 2), "cleaned_s": round(cleaned_s, 1), "delivered": counts}
            )
        )
    finally:
        stop.set()
        if feeder is not None:
            await asyncio.gather(feeder, return_exceptions=True)
        for ws in sockets:
            await ws.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
