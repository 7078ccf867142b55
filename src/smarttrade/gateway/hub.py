"""The fan-out hub: ONE pub/sub reader per gateway process feeding every socket (DESIGN.md §6).

Each ``trades:SYMBOL`` message is decoded once; the frames derived from it (``trades``, ``quote``,
``footprint``) are encoded once, on first need, and the same text is queued to every socket that
wants it. Each socket has a bounded ``Outbox``: quotes conflate to the latest, footprint deltas of
a socket that falls behind are merged per level (never dropped, so its ladder stays exact), and
frames that may not be dropped (trades, alerts, replies) count against a byte and frame bound. The
slow-client ladder (docs/protocol.md): a socket a quarter of the way to that bound is moved to a
slower rate (a "slow" frame; its trades batched per symbol into one frame per 250 ms round, never
dropped) and back when it keeps up; over a bound it is closed with 4008 "too slow".
When the reader finds several messages waiting, a symbol with many sockets gets them as one
batch (one trades frame listing the commits' offsets, one merged footprint, the newest quote).
Bars and indicators are read from the analytics views after trades, at most BARS_EVERY_S per
symbol, and conflated too.
When the reader's connection drops (redis-py resubscribes silently), a cluster shard's
subscription is lost or reopened (subscriber.py), or a symbol's epoch changes, each socket catches
up from its own offset (recovery.py), so a socket never has a silent gap.

Public API (used by the HTTP API, the alert engine and /metrics):

- ``add_trade_listener(fn)``: ``fn(symbol, message: models.TradeMessage)``, called (and awaited
  when it returns an awaitable) for every trades message the reader gets, in order, before the
  fan-out. Keep it quick: it runs on the reader.
- ``add_channel(channel, fn)``: subscribe a plain channel on the same reader; ``fn(data: bytes)``
  per message (awaited when it returns an awaitable). Works before or after start (then within
  READ_TIMEOUT_S).
- ``send_to_user(user_id, frame: bytes)``: queue ``frame`` (a JSON text frame) to every socket of
  that user on this gateway that subscribed to "alerts"; never conflated nor dropped. Returns how
  many sockets it went to.
- ``await probe(timeout_s) -> float``: publish a canary on this gateway's probe channel (in a
  sharded cluster one per primary, by SPUBLISH like the trades) and wait for the reader to receive
  every one; the seconds it took; TimeoutError when one does not come, ``DeliveryBroken`` at once
  when the reader is known not to be subscribed.
- ``watch(symbols)``: also receive these symbols' trades with no socket on them (the alert
  engine's); a sharded cluster has no patterns, so the hub subscribes each symbol's channel.
- ``stats() -> dict``: clients, queued_frames, queued_bytes, peak_queued_bytes (the most
  undroppable bytes one socket ever had queued), slowed (moves to the slower rate), slow_now,
  slow_closed, frames_sent, messages_in, batched (messages sent in batches), reader_errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import secrets
import time
from collections import OrderedDict, defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from smarttrade.analytics.views import AnalyticsViews
from smarttrade.errors import DecodeError, SmartTradeError
from smarttrade.gateway import recovery
from smarttrade.gateway.presence import Presence
from smarttrade.gateway.protocol import (
    IDLE_TIMEOUT_S,
    Since,
    Subscribe,
    encode,
    error_frame,
    offset_key,
)
from smarttrade.gateway.subscriber import Resubscribe, Subscriber, subscriber_for
from smarttrade.keyspace import Store, gateway_probe_channel
from smarttrade.models import TradeMessage, decode
from smarttrade.redis.cancel import cancel_and_wait, raise_if_cancelled
from smarttrade.redis.connections import REDIS_FAILURES
from smarttrade.redis.topology import Topology
from smarttrade.settings import Settings
from smarttrade.stores import Stores
from smarttrade.symbols import SymbolSpec, spec_for

log = logging.getLogger(__name__)
READ_TIMEOUT_S = 0.2
BARS_EVERY_S = 0.5  # bars/indicators frames per symbol at most every this many seconds
MAX_STRICT_BYTES = 1 << 20  # undroppable frames queued per socket
MAX_STRICT_FRAMES = 4096
MAX_MERGED_LEVELS = 20_000  # footprint levels merged for one symbol of one socket
MAX_REPLAY_BUFFER = 10_000  # live messages held for one symbol while it replays
SYMBOL_SUBSCRIBE_WAIT_S = 2.0  # a subscribe waits this long for a sharded reader to SSUBSCRIBE
MAX_BATCH = 512  # pub/sub messages taken in one read (what was already waiting)
BATCH_MIN_SOCKETS = 8  # a symbol with fewer sockets gets one frame per commit even when behind
# The slow-client ladder (docs/protocol.md, "Flow control"): a socket this far behind goes to the
# slower rate (trades batched per symbol, everything sent every SLOW_EVERY_S); back to live after
# SLOW_HOLD_S when a round goes out within SLOW_EVERY_S; closed (4008) over MAX_SLOW_TRADES.
SLOW_AT_BYTES = MAX_STRICT_BYTES // 4
SLOW_AT_FRAMES = MAX_STRICT_FRAMES // 4
SLOW_EVERY_S = 0.25
SLOW_HOLD_S = 5.0
MAX_SLOW_TRADES = 20_000
SLOW_REASON = "behind: trades are batched per symbol and sent every 250 ms; none is dropped"
RESUME_BELOW = MAX_STRICT_BYTES // 2  # a replay waits for the socket to drain to here

Listener = Callable[[str, TradeMessage], Any]
ChannelFn = Callable[[bytes], Any]


class TooSlow(Exception):
    pass


class DeliveryBroken(SmartTradeError):
    """The reader is known not to be subscribed (so /healthz need not wait for a canary)."""


@dataclass
class FootprintDelta:
    """One commit's per-level (buy, sell) deltas in quantity units, and its shared frame."""

    symbol: str
    offset: str
    epoch: str
    levels: dict[int, list[int]]
    frame: str | None = None
    owned: bool = False  # a private merge (an outbox's): may be added to in place

    def add(self, d: FootprintDelta) -> None:
        for lv, (b, s) in d.levels.items():
            entry = self.levels.get(lv)
            if entry is None:
                self.levels[lv] = [b, s]
            else:
                entry[0] += b
                entry[1] += s
        self.offset, self.epoch, self.frame = d.offset, d.epoch, None


def footprint_frame(spec: SymbolSpec, d: FootprintDelta) -> str:
    levels = [
        {"level": lv, "price": spec.price(lv), "buy": spec.qty(b), "sell": spec.qty(s)}
        for lv, (b, s) in sorted(d.levels.items(), reverse=True)
    ]
    return encode(
        {"type": "footprint", "symbol": d.symbol, "offset": d.offset, "epoch": d.epoch, "levels": levels}
    )


def footprint_delta(spec: SymbolSpec, msg: TradeMessage) -> FootprintDelta | None:
    """What this commit did to the footprint store: trades add, cancels subtract."""
    levels: dict[int, list[int]] = {}
    for trades, sign in ((msg.trades, 1), (msg.cancelled, -1)):
        for t in trades:
            entry = levels.setdefault(spec.level(t.price), [0, 0])
            entry[0 if t.side == "buy" else 1] += sign * spec.qty_units(t.volume)
    if not levels:
        return None
    return FootprintDelta(msg.symbol, msg.offset, msg.epoch, levels)


class Frames:
    """The frames one message (or one batch of a symbol's consecutive messages) yields, each
    built and encoded at most once. A batch's ``trades`` frame carries every commit's trades in
    order and their ``offsets``; its ``footprint`` is the sum of the deltas; its ``quote`` the
    newest (docs/protocol.md, "Batches")."""

    __slots__ = ("_fp", "_quote", "_trades", "msg", "msgs", "spec")

    def __init__(self, msgs: list[TradeMessage], spec: SymbolSpec) -> None:
        self.msgs, self.msg, self.spec = msgs, msgs[-1], spec
        self._trades: str | None = None
        self._quote: str | None = None
        self._fp: FootprintDelta | bool | None = False

    def trades(self) -> str | None:
        if self._trades is not None:
            return self._trades
        m = self.msg
        if len(self.msgs) == 1:
            if m.trades or m.cancelled:
                self._trades = encode(
                    {
                        "type": "trades",
                        "symbol": m.symbol,
                        "offset": m.offset,
                        "epoch": m.epoch,
                        "seq": m.seq,
                        "trades": m.trades,
                        "cancelled": m.cancelled,
                    }
                )
            return self._trades
        some = [x for x in self.msgs if x.trades or x.cancelled]
        if some:
            self._trades = encode(
                {
                    "type": "trades",
                    "symbol": m.symbol,
                    "offset": some[-1].offset,
                    "epoch": m.epoch,
                    "seq": some[-1].seq,
                    "trades": [t for x in some for t in x.trades],
                    "cancelled": [t for x in some for t in x.cancelled],
                    "offsets": [x.offset for x in some],
                }
            )
        return self._trades

    def quote(self) -> str | None:
        if self._quote is None:
            m = next((x for x in reversed(self.msgs) if x.quote is not None), None)
            if m is not None:
                self._quote = encode(
                    {
                        "type": "quote",
                        "symbol": m.symbol,
                        "offset": m.offset,
                        "epoch": m.epoch,
                        "quote": m.quote,
                    }
                )
        return self._quote

    def footprint(self) -> FootprintDelta | None:
        if self._fp is False:
            deltas = [d for x in self.msgs if (d := footprint_delta(self.spec, x)) is not None]
            fp = deltas[-1] if deltas else None
            if len(deltas) > 1:
                fp = FootprintDelta(fp.symbol, fp.offset, fp.epoch, {})  # type: ignore[union-attr]
                for d in deltas:
                    fp.add(d)
            if fp is not None:
                fp.frame = footprint_frame(self.spec, fp)
            self._fp = fp
        return self._fp  # type: ignore[return-value]


@dataclass(eq=False)
class TradesBatch:
    """A slow socket's commits of one symbol not yet sent, to go as one trades frame."""

    spec: SymbolSpec
    after: int  # the outbox's undroppable-frame count when it opened
    msgs: list[TradeMessage] = field(default_factory=list)
    trades: int = 0
    sent: bool = False


class Outbox:
    """One socket's pending frames, in order, bounded (see the module docstring)."""

    def __init__(self) -> None:
        self.items: OrderedDict[Any, Any] = OrderedDict()
        self.strict_bytes = 0
        self.strict_frames = 0
        self.ready = asyncio.Event()
        self.drained = asyncio.Event()
        self.drained.set()
        self.failed: str | None = None
        self.gone = asyncio.Event()  # set by fail(): the socket must end, even mid-send
        self.peak_bytes = 0
        self._n = 0
        self.slow = False  # on the slower, batched rate (the ladder's first step)
        self.slow_since = 0.0
        self.slowed = 0  # how many times it was moved there
        self.batched_trades = 0  # trades waiting in batches
        self._batch: dict[str, TradesBatch] = {}  # symbol -> its open batch

    def __len__(self) -> int:
        return len(self.items)

    def _wake(self) -> None:
        self.ready.set()
        if self.strict_bytes >= RESUME_BELOW:
            self.drained.clear()

    def strict(self, frame: str) -> None:
        if self.failed:
            return
        if self.strict_bytes + len(frame) > MAX_STRICT_BYTES or self.strict_frames >= MAX_STRICT_FRAMES:
            self.fail(f"too slow: over {self.strict_frames} frames / {self.strict_bytes} bytes queued")
            return
        self._n += 1
        self.items[self._n] = frame
        self.strict_bytes += len(frame)
        self.peak_bytes = max(self.peak_bytes, self.strict_bytes)
        self.strict_frames += 1
        self._wake()

    def behind(self) -> bool:
        return self.strict_bytes >= SLOW_AT_BYTES or self.strict_frames >= SLOW_AT_FRAMES

    def go_slow(self, now: float) -> None:
        """Step one of the ladder: trades frames are batched per symbol, sent every SLOW_EVERY_S."""
        self.slow, self.slow_since = True, now
        self.slowed += 1
        self.strict(encode({"type": "slow", "rate_ms": round(SLOW_EVERY_S * 1000), "reason": SLOW_REASON}))

    def go_live(self) -> None:
        self.slow = False
        self.strict(encode({"type": "slow", "rate_ms": 0, "reason": "caught up: live rate again"}))

    def trades_batch(self, spec: SymbolSpec, msgs: list[TradeMessage]) -> None:
        """Slow: a symbol's commits wait in one batch (a later undroppable frame seals it, so the
        order of frames holds); never dropped, bounded by MAX_SLOW_TRADES."""
        if self.failed:
            return
        some = [m for m in msgs if m.trades or m.cancelled]
        if not some:
            return
        n = sum(len(m.trades) + len(m.cancelled) for m in some)
        if self.batched_trades + n > MAX_SLOW_TRADES:
            self.fail(f"too slow: over {self.batched_trades} trades waiting at the slower rate")
            return
        symbol = some[0].symbol
        batch = self._batch.get(symbol)
        if batch is None or batch.after != self._n or batch.sent:
            batch = TradesBatch(spec, self._n)
            self._batch[symbol] = batch
            self.items[("trades", symbol, self._n)] = batch
        batch.msgs.extend(some)
        batch.trades += n
        self.batched_trades += n
        self._wake()

    def latest(self, slot: Any, frame: str) -> None:
        """Conflated: a newer frame for the same slot replaces one not yet sent."""
        if not self.failed:
            self.items[slot] = frame
            self._wake()

    def footprint(self, d: FootprintDelta) -> None:
        """Merged: deltas for a symbol not yet sent are summed per level."""
        if self.failed:
            return
        slot = ("footprint", d.symbol)
        pending = self.items.get(slot)
        if pending is None:
            self.items[slot] = d
        else:
            if not pending.owned:  # the shared delta must not change: merge into a copy
                levels = {lv: list(v) for lv, v in pending.levels.items()}
                pending = FootprintDelta(d.symbol, pending.offset, pending.epoch, levels, owned=True)
                self.items[slot] = pending
            pending.add(d)
            if len(pending.levels) > MAX_MERGED_LEVELS:
                self.fail("too slow: footprint levels piled up")
                return
        self._wake()

    def fail(self, reason: str) -> None:
        self.failed = reason
        self.items.clear()
        self.strict_bytes = self.strict_frames = 0
        self.ready.set()
        self.drained.set()
        self.gone.set()

    def pop(self) -> str | None:
        """The next frame to send, or None when empty."""
        if not self.items:
            self.ready.clear()
            return None
        slot, item = self.items.popitem(last=False)
        if isinstance(item, TradesBatch):
            item.sent = True
            self.batched_trades -= item.trades
            return Frames(item.msgs, item.spec).trades()
        if isinstance(item, FootprintDelta):
            return item.frame or footprint_frame(spec_for(item.symbol), item)
        if isinstance(slot, int):
            self.strict_bytes -= len(item)
            self.strict_frames -= 1
            if self.strict_bytes < RESUME_BELOW:
                self.drained.set()
        return item


@dataclass(eq=False)
class Client:
    """One socket as the hub sees it."""

    user: str
    socket_id: str
    outbox: Outbox = field(default_factory=Outbox)
    subs: dict[str, set[str]] = field(default_factory=dict)  # symbol -> channels
    alerts: bool = False
    last: dict[str, tuple[int, int]] = field(default_factory=dict)  # symbol -> last offset sent
    where: dict[str, tuple[str, str]] = field(default_factory=dict)  # symbol -> (offset, epoch) sent
    replaying: dict[str, list[TradeMessage]] = field(default_factory=dict)

    def deliver(self, frames: Frames) -> None:
        msg = frames.msg
        if msg.offset:
            key = offset_key(msg.offset)
            last = self.last.get(msg.symbol, (0, 0))
            if key <= last:
                return  # already sent by a replay or a snapshot
            if len(frames.msgs) > 1 and offset_key(frames.msgs[0].offset) <= last:
                for m in frames.msgs:  # partly sent already: the rest one by one
                    self.deliver(Frames([m], frames.spec))
                return
            self.last[msg.symbol] = key
            self.where[msg.symbol] = (msg.offset, msg.epoch)
        chans = self.subs.get(msg.symbol, ())
        out = self.outbox
        if "trades" in chans:
            if out.slow and msg.symbol not in self.replaying:
                out.trades_batch(frames.spec, frames.msgs)
            elif (f := frames.trades()) is not None:
                out.strict(f)
                if not out.slow and not self.replaying and out.behind():
                    out.go_slow(time.monotonic())
        if "quotes" in chans and (f := frames.quote()) is not None:
            out.latest(("quote", msg.symbol), f)
        if "footprint" in chans and (d := frames.footprint()) is not None:
            out.footprint(d)


class Hub:
    def __init__(self, settings: Settings, topology: Topology, stores: Stores, gateway_id: str) -> None:
        self.settings = settings
        self.topology = topology
        self.stores = stores
        self.gateway_id = gateway_id
        self.views = AnalyticsViews(topology, settings)
        self.redis = topology.client(Store.ORDERFLOW)
        self.presence = Presence(topology, stores, gateway_id)
        self.clients: set[Client] = set()
        self.by_symbol: dict[str, set[Client]] = defaultdict(set)
        self._listeners: list[Listener] = []
        self._channels: dict[str, ChannelFn] = {}
        self._pending_channels: list[str] = []
        self._probes: dict[bytes, tuple[set[str], asyncio.Future[float]]] = {}
        self._probe_set: set[str] = set()
        self._symbols: set[str] = set()  # symbols whose trades the reader must get
        self._new_symbols: set[str] = set()  # ... not subscribed yet
        self._symbol_waiters: dict[str, asyncio.Future[None]] = {}  # subscribes waiting for that
        self._bars_due: dict[str, asyncio.Task] = {}
        self._resyncs: set[asyncio.Task] = set()
        self._gap = False  # the reader lost its connection: sockets must catch up by offset
        self._reader: asyncio.Task | None = None
        self._subscribed = False
        self._sub: Subscriber | None = None
        self._fault: str | None = "the pub/sub reader has not subscribed yet"
        self.probe_channel = gateway_probe_channel(gateway_id)
        self.idle_timeout_s = IDLE_TIMEOUT_S  # a socket silent this long is closed (4000)
        self.batch_min_sockets = BATCH_MIN_SOCKETS
        self._peak = 0  # the most undroppable bytes any socket had queued
        self._slowed = 0  # moves to the slower rate by sockets now closed
        self.counts = {
            "messages_in": 0,
            "frames_sent": 0,
            "slow_closed": 0,
            "reader_errors": 0,
            "resyncs": 0,
            "batched": 0,
        }
        self.add_channel(self.presence.expired_channel, self.presence.on_expired)

    # --- public API ------------------------------------------------------------------------

    def add_trade_listener(self, fn: Listener) -> None:
        self._listeners.append(fn)

    def add_channel(self, channel: str, fn: ChannelFn) -> None:
        self._channels[channel] = fn
        self._pending_channels.append(channel)

    def send_to_user(self, user_id: str, frame: bytes) -> int:
        text = frame.decode()
        n = 0
        for c in self.clients:
            if c.user == user_id and c.alerts:
                c.outbox.strict(text)
                n += 1
        return n

    async def probe(self, timeout_s: float) -> float:
        if (fault := self.delivery_fault()) is not None:
            raise DeliveryBroken(fault)
        assert self._sub is not None
        token = secrets.token_hex(8).encode()
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._probes[token] = (set(self._sub.probes), fut)
        started = time.perf_counter()
        try:
            await self._sub.publish_probe(token)
            await asyncio.wait_for(fut, timeout_s)
            return time.perf_counter() - started
        finally:
            self._probes.pop(token, None)

    def delivery_fault(self) -> str | None:
        """Why this gateway cannot deliver now, as far as the reader knows (None: no known fault)."""
        if not self._subscribed or self._sub is None:
            return self._fault or "the pub/sub reader is not subscribed"
        return self._sub.check()

    def watch(self, symbols: Iterable[str]) -> None:
        """Receive these symbols' trades even with no socket on them (see the module docstring)."""
        new = set(symbols) - self._symbols
        self._symbols |= new
        self._new_symbols |= new

    def stats(self) -> dict[str, int]:
        return {
            "clients": len(self.clients),
            "queued_frames": sum(len(c.outbox) for c in self.clients),
            "queued_bytes": sum(c.outbox.strict_bytes for c in self.clients),
            "peak_queued_bytes": max([self._peak, *(c.outbox.peak_bytes for c in self.clients)]),
            "slowed": self._slowed + sum(c.outbox.slowed for c in self.clients),
            "slow_now": sum(c.outbox.slow for c in self.clients),
            **self.counts,
        }

    # --- service -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Starts with Redis away too (the reader subscribes when it can; /healthz says 503 until
        then): a gateway started before its Redis, or during a restart, comes up by itself."""
        try:
            await self._subscribe()
        except (*REDIS_FAILURES, Resubscribe) as exc:
            self._fault = f"the pub/sub reader is not subscribed: {exc}"
            log.warning("hub: not subscribed yet (%s); retrying", exc)
        self._reader = asyncio.create_task(self._read())
        await self.presence.start()

    async def _subscribe(self) -> None:
        """(Re)open the subscription from scratch: every channel, every symbol watched."""
        if self._sub is not None:
            await self._sub.aclose()
        self._sub = await subscriber_for(self.topology, self.probe_channel)
        self._pending_channels = []
        self._new_symbols = set()
        await self._sub.open(self._symbols, list(self._channels))
        self._probe_set = set(self._sub.probes)
        self._subscribed, self._fault = True, None
        self._symbols_applied(set(self._symbols))

    async def stop(self) -> None:
        await self.presence.stop()
        await cancel_and_wait(self._reader)  # it takes a lost cancel for Redis away, and goes on
        for task in [*self._bars_due.values(), *self._resyncs]:
            task.cancel()
        if self._sub is not None:
            await self._sub.aclose()

    async def _apply_pending(self) -> None:
        assert self._sub is not None
        pending, self._pending_channels = self._pending_channels, []
        if pending:
            await self._sub.add_channels(pending)
        symbols, self._new_symbols = self._new_symbols, set()
        if symbols:
            try:
                await self._sub.add_symbols(symbols)
            except BaseException:
                self._new_symbols |= symbols
                raise
            self._symbols_applied(symbols)

    def _symbols_applied(self, symbols: set[str]) -> None:
        for symbol in symbols:
            fut = self._symbol_waiters.pop(symbol, None)
            if fut is not None and not fut.done():
                fut.set_result(None)

    async def _wait_symbol(self, symbol: str) -> None:
        """A new symbol on a sharded reader: its channel is subscribed before its catch-up reads
        the stream, so no commit falls between. Bounded: a reader that cannot subscribe now
        reopens later and catches every socket up then (a gap)."""
        if self._sub is None or not self._sub.sharded or symbol not in self._new_symbols:
            return
        fut = self._symbol_waiters.get(symbol)
        if fut is None:
            fut = self._symbol_waiters[symbol] = asyncio.get_running_loop().create_future()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(fut), SYMBOL_SUBSCRIBE_WAIT_S)

    def _lost(self, reason: str) -> None:
        """The subscription broke: /healthz says so until the reader has reopened it."""
        self.counts["reader_errors"] += 1
        log.warning("hub reader: %s", reason)
        self._subscribed, self._fault = False, f"the pub/sub reader is not subscribed: {reason}"
        self._gap = True

    async def _read(self) -> None:
        while True:
            raise_if_cancelled()
            try:
                if not self._subscribed:
                    await self._subscribe()
                    self._gap = True  # whatever was published before is caught up by offset
                assert self._sub is not None
                if self._pending_channels or self._new_symbols:
                    await self._apply_pending()
                msg = await self._sub.next(READ_TIMEOUT_S)
            except asyncio.CancelledError:
                raise
            except (*REDIS_FAILURES, Resubscribe) as exc:
                self._lost(str(exc) or type(exc).__name__)
                await asyncio.sleep(0.5)
                continue
            if self._gap or self._sub.gap:  # resubscribed: catch up what was published meanwhile
                self._gap = self._sub.gap = False
                self.counts["resyncs"] += 1
                for c in list(self.clients):
                    for symbol in list(c.subs):
                        self._resync(c, symbol, [])
            if msg is None:
                continue
            batch = [msg]
            try:  # what is already waiting goes out together (see _fan_out)
                while len(batch) < MAX_BATCH and (more := await self._sub.more()):
                    batch.append(more)
            except (*REDIS_FAILURES, Resubscribe) as exc:
                self._lost(str(exc) or type(exc).__name__)
            trades: dict[str, list[TradeMessage]] = {}
            for m in batch:
                try:
                    trade = await self._dispatch(m)
                    if trade is not None:
                        trades.setdefault(trade.symbol, []).append(trade)
                except Exception:  # a bad message or listener must not stop the fan-out
                    self.counts["reader_errors"] += 1
                    log.exception("hub reader")
            for symbol, msgs in trades.items():
                try:
                    self._fan_out(symbol, msgs)
                except Exception:
                    self.counts["reader_errors"] += 1
                    log.exception("hub fan-out")

    async def _dispatch(self, msg: dict[str, Any]) -> TradeMessage | None:
        """Handle one pub/sub message; a trades message is returned for the fan-out, after its
        listeners ran."""
        channel = msg["channel"].decode()
        data: bytes = msg["data"]
        if msg["type"] in ("pmessage", "smessage") and channel not in self._probe_set:
            self.counts["messages_in"] += 1
            try:
                trade = decode(TradeMessage, data, channel)
            except DecodeError as exc:
                log.warning("hub: %s", exc)
                return None
            await self._listen(trade)
            return trade
        elif channel in self._probe_set:
            waiting = self._probes.get(data)
            if waiting is not None:
                waiting[0].discard(channel)
                if not waiting[0] and not waiting[1].done():
                    waiting[1].set_result(0.0)
        elif (fn := self._channels.get(channel)) is not None:
            result = fn(data)
            if inspect.isawaitable(result):
                await result
        return None

    async def _listen(self, msg: TradeMessage) -> None:
        for fn in self._listeners:
            try:
                result = fn(msg.symbol, msg)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("trade listener")

    def _fan_out(self, symbol: str, msgs: list[TradeMessage]) -> None:
        """Queue a symbol's messages of one read to its sockets. Several go as one batch (one
        frame of each kind for all of them, so per-socket work is per read, not per commit) when
        the symbol has at least ``batch_min_sockets`` sockets and one epoch; else one by one."""
        clients = self.by_symbol.get(symbol)
        if not clients:
            return
        if len(msgs) > 1 and (len(clients) < self.batch_min_sockets or msgs[0].epoch != msgs[-1].epoch):
            for m in msgs:
                self._fan_out(symbol, [m])
            return
        if len(msgs) > 1:
            self.counts["batched"] += len(msgs)
        msg = msgs[-1]
        frames = Frames(msgs, spec_for(symbol))
        wants_bars = False
        for c in list(clients):
            buffer = c.replaying.get(symbol)
            if buffer is not None:
                if len(buffer) >= MAX_REPLAY_BUFFER:
                    c.outbox.fail("too slow: live messages piled up during a replay")
                else:
                    buffer.extend(msgs)
                continue
            known = c.where.get(symbol)
            if msg.epoch and known and known[1] and known[1] != msg.epoch:
                self._resync(c, symbol, list(msgs))  # the history changed under it: a snapshot
                continue
            c.deliver(frames)
            chans = c.subs.get(symbol, ())
            wants_bars = wants_bars or "bars" in chans or "indicators" in chans
        if wants_bars and symbol not in self._bars_due:
            self._bars_due[symbol] = asyncio.create_task(self._bars_later(symbol, msg))

    async def _bars_later(self, symbol: str, msg: TradeMessage) -> None:
        try:
            await asyncio.sleep(BARS_EVERY_S)
            bars = await recovery.current_bars(self.views, symbol, self.settings.smarttrade_timeframes)
            peek = await self.views.forming_peek(symbol)
            head = {"symbol": symbol, "offset": msg.offset, "epoch": msg.epoch}
            bar_frames = {
                tf: encode({"type": "bar", **head, "timeframe": tf, "bar": b}) for tf, b in bars.items()
            }
            ind = encode({"type": "indicators", **head, "values": peek}) if peek else None
            for c in self.by_symbol.get(symbol, ()):
                chans = c.subs.get(symbol, ())
                if "bars" in chans:
                    for tf, f in bar_frames.items():
                        c.outbox.latest(("bar", symbol, tf), f)
                if "indicators" in chans and ind is not None:
                    c.outbox.latest(("indicators", symbol), ind)
        except (SmartTradeError, *REDIS_FAILURES, ValueError) as exc:
            log.warning("hub bars %s: %s", symbol, exc)
        finally:
            self._bars_due.pop(symbol, None)

    # --- sockets -----------------------------------------------------------------------------

    def register(self, user: str, socket_id: str) -> Client:
        client = Client(user, socket_id)
        self.clients.add(client)
        return client

    def unregister(self, client: Client) -> None:
        self.clients.discard(client)
        for sym in client.subs:
            self.by_symbol[sym].discard(client)
            if not self.by_symbol[sym]:
                del self.by_symbol[sym]
        self._peak = max(self._peak, client.outbox.peak_bytes)
        self._slowed += client.outbox.slowed
        if client.outbox.failed and client.outbox.failed.startswith("too slow"):
            self.counts["slow_closed"] += 1

    async def subscribe(self, client: Client, msg: Subscribe) -> None:
        """Add the symbols; each gets its replay (``since``) or a snapshot, then goes live."""
        channels = set(msg.channels)
        client.alerts = client.alerts or "alerts" in channels
        market = channels - {"alerts"}
        for symbol in msg.symbols:
            try:
                spec_for(symbol)
            except SmartTradeError as exc:
                client.outbox.strict(error_frame("unknown_symbol", f"{symbol}: {exc}"))
                continue
            client.subs[symbol] = market
            self.by_symbol[symbol].add(client)
            self.watch([symbol])
            await self._wait_symbol(symbol)
            client.replaying[symbol] = []
            try:
                ack = await self._catch_up(client, symbol, msg.since.get(symbol))
            finally:
                buffered = client.replaying.pop(symbol, [])
            for live in buffered:
                client.deliver(Frames([live], spec_for(symbol)))
            client.outbox.strict(
                encode({"type": "subscribed", "symbol": symbol, "channels": sorted(channels), **ack})
            )

    def _resync(self, client: Client, symbol: str, held: list[TradeMessage]) -> None:
        """Catch a live socket up from its own position (after a reader reconnect or an epoch
        change): live messages are held meanwhile, as during a subscribe."""
        if symbol in client.replaying:
            client.replaying[symbol].extend(held)
            return
        client.replaying[symbol] = list(held)
        task = asyncio.create_task(self._resync_task(client, symbol))
        self._resyncs.add(task)
        task.add_done_callback(self._resyncs.discard)

    async def _resync_task(self, client: Client, symbol: str) -> None:
        known = client.where.get(symbol)
        since = Since(offset=known[0], epoch=known[1]) if known and known[1] else None
        try:
            await self._catch_up(client, symbol, since)
        except TooSlow:
            pass  # the outbox failed: its socket is closing
        except (SmartTradeError, *REDIS_FAILURES) as exc:
            client.outbox.fail(f"too slow: could not catch up after a gap ({exc})")
        finally:
            buffered = client.replaying.pop(symbol, [])
        if symbol in client.subs:
            frames_spec = spec_for(symbol)
            for live in buffered:
                client.deliver(Frames([live], frames_spec))

    def unsubscribe(self, client: Client, symbols: list[str]) -> None:
        for symbol in symbols:
            client.subs.pop(symbol, None)
            client.last.pop(symbol, None)
            client.where.pop(symbol, None)
            self.by_symbol.get(symbol, set()).discard(client)

    async def _catch_up(self, client: Client, symbol: str, since: Since | None) -> dict[str, Any]:
        spec = spec_for(symbol)
        if since is not None:
            replayed, offset = 0, since.offset
            try:
                async for page in recovery.replay(self.redis, symbol, since):
                    for m in page:
                        client.deliver(Frames([m], spec))
                    replayed, offset = replayed + len(page), page[-1].offset
                    await self._drained(client)
                quote = await self.stores.quotes.latest(symbol)
                last = client.last.get(symbol)
                if quote is not None and "quotes" in client.subs.get(symbol, ()):
                    client.outbox.latest(
                        ("quote", symbol),
                        encode({"type": "quote", "symbol": symbol, "offset": offset, "epoch": since.epoch,
                                "quote": quote}),
                    )  # fmt: skip
                if last is None:
                    client.last[symbol] = offset_key(since.offset)
                    client.where[symbol] = (since.offset, since.epoch)
                return {"recovered": True, "replayed": replayed, "offset": offset, "epoch": since.epoch}
            except recovery.HistoryLost as exc:
                reason = str(exc)
        else:
            reason = None
        snap = await recovery.snapshot(self.stores, self.views, symbol, self.settings.smarttrade_timeframes)
        client.last[symbol] = offset_key(snap["offset"])
        client.where[symbol] = (snap["offset"], snap["epoch"])
        recovered = since is None
        frame = {"type": "snapshot", "symbol": symbol, "recovered": recovered, **snap}
        if reason:
            frame["reason"] = reason
        client.outbox.strict(encode(frame))
        return {"recovered": recovered, "replayed": 0, "offset": snap["offset"], "epoch": snap["epoch"]}

    async def _drained(self, client: Client) -> None:
        """Backpressure for a replay: wait (bounded) until the socket has sent most of it."""
        try:
            await asyncio.wait_for(client.outbox.drained.wait(), 10.0)
        except TimeoutError:
            client.outbox.fail("too slow: a replay did not drain in 10 s")
        if client.outbox.failed:
            raise TooSlow(client.outbox.failed)


async def writer(client: Client, send: Callable[[str], Awaitable[None]], counts: dict[str, int]) -> str:
    """Send a socket's frames until its outbox fails; returns why (the close reason). At the
    slower rate it sends a round (all that is pending) every SLOW_EVERY_S."""
    out = client.outbox
    round_at: float | None = None  # when the current round of sends began
    while True:
        await out.ready.wait()
        if out.failed:
            return out.failed
        if round_at is None:
            round_at = time.monotonic()
        frame = out.pop()
        if frame is not None:
            await send(frame)
            counts["frames_sent"] += 1
            continue
        if out.slow:
            now = time.monotonic()
            if now - round_at <= SLOW_EVERY_S and now - out.slow_since >= SLOW_HOLD_S:
                out.go_live()
                continue
            await asyncio.sleep(SLOW_EVERY_S)
            out.ready.set()  # the next round, even an empty one (it may end the slow rate)
        round_at = None
