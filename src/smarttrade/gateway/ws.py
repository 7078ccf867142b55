"""The WebSocket endpoint /ws (docs/protocol.md): auth, the per-socket read loop with its rate
limit and idle timeout, and the writer that drains the socket's outbox. The fan-out, recovery and
sessions live in hub.py, recovery.py and presence.py; this module maps their outcomes to frames
and close codes (the edge)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time

from fastapi import APIRouter, WebSocket

from smarttrade.errors import SmartTradeError
from smarttrade.gateway.auth import AuthError
from smarttrade.gateway.context import GatewayContext
from smarttrade.gateway.deps import token_of
from smarttrade.gateway.hub import Client, Hub, TooSlow, writer
from smarttrade.gateway.protocol import (
    CLOSE_IDLE,
    CLOSE_NORMAL,
    CLOSE_POLICY,
    CLOSE_TOO_SLOW,
    CLOSE_UNAUTHORIZED,
    Ping,
    ProtocolError,
    Subscribe,
    Unsubscribe,
    encode,
    error_frame,
    parse,
)
from smarttrade.redis.connections import REDIS_FAILURES

log = logging.getLogger(__name__)
router = APIRouter()
RATE_PER_S = 50.0
BURST = 100.0
FAR_OVER = 100.0  # messages beyond the burst (refused ones count) before a 1008 close
TOUCH_EVERY_S = 30.0
CLOSE_WAIT_S = 2.0


class RateLimit:
    """A token bucket: ``rate`` messages/s, ``burst`` at once; refused messages still cost, so a
    client that keeps flooding goes ever deeper and is closed."""

    def __init__(self, rate: float = RATE_PER_S, burst: float = BURST) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = burst
        self.at = time.monotonic()

    def take(self) -> str:
        """ "ok", "over" (refuse this one) or "far" (close the socket)."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate) - 1
        self.at = now
        if self.tokens >= 0:
            return "ok"
        return "far" if self.tokens < -FAR_OVER else "over"


async def _quietly(what: str, coro: object) -> None:
    """Presence writes must not break a socket: Redis trouble is logged, the socket goes on."""
    try:
        await coro  # type: ignore[misc]
    except (*REDIS_FAILURES, SmartTradeError) as exc:
        log.warning("presence %s: %s", what, exc)


async def _read(ws: WebSocket, hub: Hub, client: Client) -> tuple[int, str]:
    """Read and answer client messages until the socket ends; the close code and reason."""
    limit = RateLimit()
    touched = time.monotonic()
    out = client.outbox
    while True:
        try:
            event = await asyncio.wait_for(ws.receive(), hub.idle_timeout_s)
        except TimeoutError:
            return CLOSE_IDLE, f"nothing received for {hub.idle_timeout_s:g} s (send pings)"
        if event["type"] == "websocket.disconnect":
            return 0, "client closed"
        verdict = limit.take()
        if verdict == "far":
            return CLOSE_POLICY, "message rate limit: far over it"
        if verdict == "over":
            out.strict(error_frame("rate_limited", f"over {RATE_PER_S:g} messages/s (burst {BURST:g})"))
            continue
        if time.monotonic() - touched > TOUCH_EVERY_S:
            touched = time.monotonic()
            await _quietly("touch", hub.presence.touch(client.user))
        data = event.get("text")
        if data is None:
            data = event.get("bytes") or b""
        try:
            msg = parse(data)
        except ProtocolError as exc:
            out.strict(error_frame(exc.code, exc.message))
            continue
        if isinstance(msg, Ping):
            out.strict(encode({"type": "pong", "id": msg.id, "time": time.time()}))
        elif isinstance(msg, Subscribe):
            # the session shows the symbols before their "subscribed" frames go out
            wanted = list(dict.fromkeys([*client.subs, *msg.symbols]))
            await _quietly("subscribe", hub.presence.set_symbols(client.user, client.socket_id, wanted))
            try:
                await hub.subscribe(client, msg)
            except TooSlow as exc:
                return CLOSE_TOO_SLOW, str(exc)
            except (SmartTradeError, *REDIS_FAILURES) as exc:
                out.strict(error_frame("unavailable", f"subscribe: {exc}"))
            if list(client.subs) != wanted:  # some were refused
                await _quietly(
                    "subscribe", hub.presence.set_symbols(client.user, client.socket_id, client.subs)
                )
        elif isinstance(msg, Unsubscribe):
            hub.unsubscribe(client, msg.symbols)
            out.strict(encode({"type": "unsubscribed", "symbols": msg.symbols}))
            await _quietly(
                "unsubscribe", hub.presence.set_symbols(client.user, client.socket_id, client.subs)
            )


@router.websocket("/ws")
async def ws_endpoint(ws: WebSocket) -> None:
    ctx: GatewayContext = ws.app.state.ctx
    hub: Hub = ctx.hub  # type: ignore[assignment]
    token = token_of(ws.headers.get("authorization"), ws.query_params.get("token"))
    await ws.accept()  # then close with 4401: a browser sees close codes, not HTTP statuses
    try:
        who = ctx.tokens.verify(token)
    except AuthError as exc:
        await ws.close(CLOSE_UNAUTHORIZED, str(exc)[:120])
        return
    client = hub.register(who.user, "ws-" + secrets.token_hex(8))
    await _quietly("open", hub.presence.open(client.user, client.socket_id))

    async def send(frame: str) -> None:
        await ws.send_text(frame)

    reader = asyncio.create_task(_read(ws, hub, client))
    sender = asyncio.create_task(writer(client, send, hub.counts))
    gone = asyncio.create_task(client.outbox.gone.wait())  # a send blocked on a full socket ends too
    code, reason = CLOSE_NORMAL, ""
    try:
        done, _ = await asyncio.wait({reader, sender, gone}, return_when=asyncio.FIRST_COMPLETED)
        if gone in done:
            code, reason = CLOSE_TOO_SLOW, client.outbox.failed or "too slow"
        elif sender in done:
            exc = sender.exception()
            code, reason = (CLOSE_TOO_SLOW, sender.result()) if exc is None else (0, "send failed")
        else:
            code, reason = reader.result()
    except Exception:  # any failure of one socket ends that socket only
        log.exception("socket %s", client.socket_id)
        code, reason = 1011, "internal error"
    finally:
        if client.outbox.failed is None and code == CLOSE_TOO_SLOW:
            client.outbox.fail(reason)
        hub.unregister(client)  # first: no more frames for it, whatever its tasks are doing
        for task in (reader, sender, gone):
            task.cancel()
        # redis-py may finish a command before it honours a cancel: wait a bounded time only
        await asyncio.wait({reader, sender, gone}, timeout=CLOSE_WAIT_S)
        await _quietly("close", hub.presence.close(client.user, client.socket_id))
        if code:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(code, reason[:120]), CLOSE_WAIT_S)
