"""Sessions through real sockets: session:USER_ID follows a user's tabs (newest socket, union of
symbols), the last close deletes it, and a gateway killed with -9 is cleaned up by another through
the expired-key notification of its liveness key, or by the sweep when no notification came."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from websockets.asyncio.client import ClientConnection, connect

from smarttrade.keyspace import GATEWAY_ALIVE_TTL
from smarttrade.redis.embedded import EmbeddedRedis
from tests.test_gateway_ws import SECRET, Gateway, free_port, gateway, pong, subscribe

__all__ = ["gateway"]
ROOT = Path(__file__).resolve().parent.parent


def sessions_db(server: EmbeddedRedis) -> redis.Redis:
    return redis.Redis(port=server.port, db=4, decode_responses=True)


async def until(check: Callable[[], object], timeout: float, step: float = 0.05) -> float:
    """Seconds until ``check()`` is true; AssertionError after ``timeout``."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s")
        await asyncio.sleep(step)
    return time.monotonic() - started


def session(r: redis.Redis, user: str) -> dict | None:
    raw = r.get(f"session:{user}")
    return None if raw is None else json.loads(raw)


async def test_session_follows_tabs_and_the_last_close_deletes_it(
    gateway: Gateway, server: EmbeddedRedis
) -> None:
    r = sessions_db(server)
    async with connect(gateway.url("alice")) as tab1:
        await pong(tab1, 1)
        first = session(r, "alice")
        assert first is not None and first["user_id"] == "alice" and first["subscriptions"] == []
        assert 0 < r.ttl("session:alice") <= 3600 and r.hkeys("sockets:alice") == [first["socket_id"]]
        await subscribe(tab1, ["WIN"], ["trades"])
        assert session(r, "alice")["subscriptions"] == ["WIN"]  # type: ignore[index]
        async with connect(gateway.url("alice")) as tab2:
            await subscribe(tab2, ["DOL", "WIN"], ["quotes"])
            both = session(r, "alice")
            assert both is not None and set(both["subscriptions"]) == {"WIN", "DOL"}
            assert both["socket_id"] != first["socket_id"]  # the newest socket
            assert len(r.hkeys("sockets:alice")) == 2
            assert r.scard(f"gateway:sockets:{gateway.ctx.gateway_id}") == 2
        await until(lambda: len(r.hkeys("sockets:alice")) == 1, 3)
        left = session(r, "alice")
        assert (
            left is not None and left["socket_id"] == first["socket_id"] and left["subscriptions"] == ["WIN"]
        )
        await tab1.send(json.dumps({"type": "unsubscribe", "symbols": ["WIN"]}))
        await until(lambda: session(r, "alice")["subscriptions"] == [], 3)  # type: ignore[index]
    await until(lambda: session(r, "alice") is None, 3)
    assert not r.exists("sockets:alice") and r.scard(f"gateway:sockets:{gateway.ctx.gateway_id}") == 0
    assert r.ttl(f"gateway:alive:{gateway.ctx.gateway_id}") > 0


def start_gateway(server: EmbeddedRedis, gateway_id: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": server.url,
        "SMARTTRADE_GATEWAY_SECRET": SECRET,
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run_gateway.py"),
            "--port",
            str(port),
            "--gateway-id",
            gateway_id,
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return proc, port


async def connected_on(proc: subprocess.Popen, port: int, gateway: Gateway, user: str) -> ClientConnection:
    deadline = time.monotonic() + 20
    while True:
        try:
            return await connect(f"ws://127.0.0.1:{port}/ws?token={gateway.tokens.create(user)}")
        except OSError:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "gateway died"
            assert time.monotonic() < deadline, "the gateway subprocess did not start"
            await asyncio.sleep(0.1)


@pytest.mark.one_binary
async def test_a_gateway_killed_with_9_is_cleaned_up_through_the_expired_event(
    gateway: Gateway, server: EmbeddedRedis
) -> None:
    r = sessions_db(server)
    proc, port = start_gateway(server, "gw-victim")
    try:
        ws = await connected_on(proc, port, gateway, "eve")
        await subscribe(ws, ["WIN"], ["trades"])
        assert session(r, "eve") is not None and r.exists("gateway:alive:gw-victim")
        async with connect(gateway.url("eve")) as here:  # her other tab, on the gateway that lives
            await subscribe(here, ["DOL"], ["trades"])
            assert set(session(r, "eve")["subscriptions"]) == {"WIN", "DOL"}  # type: ignore[index]
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            killed = time.monotonic()
            await until(lambda: len(r.hkeys("sockets:eve")) == 1, GATEWAY_ALIVE_TTL + 10, step=0.2)
            took = time.monotonic() - killed
            print(f"cleanup after kill -9: {took:.1f} s")
            assert session(r, "eve")["subscriptions"] == ["DOL"]  # type: ignore[index]
            assert not r.exists("gateway:sockets:gw-victim") and gateway.hub.presence.cleaned == 1
            assert took <= GATEWAY_ALIVE_TTL + 3  # the event path, well inside the stated 45 s bound
        await until(lambda: session(r, "eve") is None, 3)
        await ws.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


async def test_the_sweep_cleans_up_when_no_notification_came(gateway: Gateway, server: EmbeddedRedis) -> None:
    r = sessions_db(server)
    proc, port = start_gateway(server, "gw-quiet")
    try:
        ws = await connected_on(proc, port, gateway, "fay")
        await subscribe(ws, ["WIN"], ["trades"])
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert session(r, "fay") is not None
        r.delete("gateway:alive:gw-quiet")  # gone without an expired event (as if one was missed)
        await gateway.hub.presence.sweep()
        assert session(r, "fay") is None and not r.exists("sockets:fay", "gateway:sockets:gw-quiet")
        await ws.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


async def test_activity_refreshes_the_session_ttl(
    gateway: Gateway, server: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from smarttrade.gateway import ws as ws_module

    monkeypatch.setattr(ws_module, "TOUCH_EVERY_S", 0.0)
    r = sessions_db(server)
    async with connect(gateway.url("gus")) as tab:
        await pong(tab, 1)
        r.expire("session:gus", 100)
        r.expire("sockets:gus", 100)
        await pong(tab, 2)  # activity
        assert r.ttl("session:gus") > 3000 and r.ttl("sockets:gus") > 3000
