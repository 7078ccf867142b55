"""The alert engine: every gateway checks every trades message against the alert index, and
pushes the fires it hears on the alert channel to its own sockets of the user.

Firing is decided in Redis (stores/alerts.py CHECK), once per commit offset across all gateways,
so any number of engines can run; each one only delivers. Messages are checked in arrival order
by one worker; at start, when a symbol gains alerts, when the queue overflowed and when a
message's seq does not follow the last one's (a message lost on the way), the worker first
catches the symbol up from its trade stream from the last offset checked (docs/alerts.md).

The hub (gateway/hub.py) provides the messages and the sockets:
``add_trade_listener(fn)`` fn(symbol, TradeMessage), ``add_channel(channel, fn)`` fn(data: bytes)
and ``send_to_user(user_id, frame: bytes)``. Our callbacks never block: they queue.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from smarttrade.errors import SmartTradeError
from smarttrade.keyspace import ALERT_CHANGES_CHANNEL, ALERT_CHANNEL, stream_epoch_key
from smarttrade.models import TradeMessage
from smarttrade.redis.cancel import cancel_and_wait, raise_if_cancelled
from smarttrade.redis.connections import REDIS_FAILURES
from smarttrade.stores.alerts import AlertStore

log = logging.getLogger(__name__)

QUEUE_MAX = 10_000  # messages waiting for a check; past it the symbol is caught up from the stream
REFRESH_S = 5.0  # the symbols-with-alerts set is re-read this often (changes also arrive at once)


class Hub(Protocol):
    def add_trade_listener(self, fn: Callable[[str, TradeMessage], Any]) -> None: ...
    def add_channel(self, channel: str, fn: Callable[[bytes], Any]) -> None: ...
    def send_to_user(self, user_id: str, frame: bytes) -> Any: ...


class _Fired(msgspec.Struct):
    user: str


@dataclass
class EngineStats:
    checked: int = 0  # messages checked against the index
    skipped: int = 0  # messages of symbols without alerts (the cheap test)
    stale: int = 0  # offsets another gateway (or a replay) had already checked
    fired: int = 0  # fires this engine decided
    delivered: int = 0  # fire frames pushed to this gateway's sockets
    caught_up: int = 0  # commits read back from the streams
    seq_gaps: int = 0  # messages whose seq did not follow the last one's (then caught up)
    check_seconds: float = 0.0  # time in check round trips
    gaps: list[str] = field(default_factory=list)  # symbols whose stream no longer reached back


class AlertEngine:
    """A gateway Service (start/stop). ``hub`` is the fan-out hub, or any object with its three
    methods (the tests use a small pub/sub reader of their own before the hub lands)."""

    def __init__(self, alerts: AlertStore, hub: Hub, *, rebuild: bool = False) -> None:
        self.alerts = alerts
        self.hub = hub
        self.rebuild = rebuild
        self.stats = EngineStats()
        self._active: set[str] = set()
        self._queue: asyncio.Queue[tuple[str, TradeMessage | None]] = asyncio.Queue(QUEUE_MAX)
        self._behind: set[str] = set()
        self._seq: dict[str, int] = {}  # the last message's seq per symbol, to notice a lost one
        self._tasks: list[asyncio.Task[None]] = []
        self._fired_decoder = msgspec.json.Decoder(_Fired)

    async def start(self) -> None:
        if self.rebuild:
            log.info("alert index rebuilt: %d entries changed", await self.alerts.rebuild())
        try:
            self._active = await self.alerts.symbols()
        except (*REDIS_FAILURES, SmartTradeError) as exc:  # Redis away: the refresher retries
            log.warning("alerts: symbols not read yet (%s)", exc)
            self._active = set()
        for symbol in sorted(self._active):
            self._queue.put_nowait((symbol, None))  # catch up first, before live messages
        self._watch(self._active)
        self.hub.add_trade_listener(self.on_trades)
        self.hub.add_channel(ALERT_CHANNEL, self.on_fired)
        self.hub.add_channel(ALERT_CHANGES_CHANNEL, self.on_changed)
        self._tasks = [asyncio.create_task(self._worker()), asyncio.create_task(self._refresher())]

    async def stop(self) -> None:
        await cancel_and_wait(*self._tasks)
        self._tasks = []

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait until every queued message is checked (tests, the benchmark)."""
        await asyncio.wait_for(self._queue.join(), timeout)

    def _watch(self, symbols: Iterable[str]) -> None:
        """A sharded cluster reader only hears symbols it subscribed: ask for the alerts' ones
        (a stand-in hub without ``watch`` hears every symbol)."""
        watch = getattr(self.hub, "watch", None)
        if watch is not None:
            watch(symbols)

    # -- hub callbacks: never block --

    def on_trades(self, symbol: str, message: TradeMessage) -> None:
        last_seq = self._seq.get(symbol)
        self._seq[symbol] = message.seq
        if symbol not in self._active or not message.offset:
            self.stats.skipped += 1
            return
        if last_seq is not None and message.seq != last_seq + 1:
            # A message was lost on the way (a dropped subscription) or another source commits
            # too: read the stream first, which holds this commit as well.
            self.stats.seq_gaps += 1
            self._behind.add(symbol)
        try:
            self._queue.put_nowait((symbol, message))
        except asyncio.QueueFull:
            self._behind.add(symbol)

    def on_changed(self, data: bytes) -> None:
        """A write armed or removed alerts of these symbols: a newly active one is caught up
        from its last checked offset, so commits between the arming and now are not missed."""
        for symbol in data.decode().split(","):
            if symbol and symbol not in self._active:
                self._active.add(symbol)
                self._behind.add(symbol)
                self._watch([symbol])

    def on_fired(self, data: bytes) -> Any:
        user = self._fired_decoder.decode(data).user
        self.stats.delivered += 1
        sent = self.hub.send_to_user(user, data)
        if inspect.isawaitable(sent):
            return asyncio.ensure_future(sent)
        return None

    # -- the worker --

    async def _worker(self) -> None:
        while True:
            raise_if_cancelled()
            symbol, message = await self._queue.get()
            try:
                for behind in sorted(self._behind):
                    self._behind.discard(behind)
                    await self._catch_up(behind)
                if message is None:
                    await self._catch_up(symbol)
                else:
                    await self._check(symbol, message.offset, message.epoch, message)
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad message or a Redis hiccup must not end the engine
                log.exception("alert check of %s failed", symbol)
                self._behind.add(symbol)
            finally:
                self._queue.task_done()

    async def _check(self, symbol: str, offset: str, epoch: str, message: TradeMessage) -> None:
        started = time.perf_counter()
        fired = await self.alerts.check(symbol, offset, epoch, message.trades)
        self.stats.check_seconds += time.perf_counter() - started
        if fired is None:
            self.stats.stale += 1
        else:
            self.stats.checked += 1
            self.stats.fired += len(fired)

    async def _catch_up(self, symbol: str) -> None:
        last = await self.alerts.last_checked(symbol)
        if last is None:
            return
        entries, reached = await self.alerts.stream_since(symbol, last)
        if not reached:
            log.warning("alerts of %s: the trade stream no longer reaches back to %s", symbol, last)
            self.stats.gaps.append(symbol)
        if not entries:
            return
        raw = await self.alerts.streams.get(stream_epoch_key(symbol))
        epoch = raw.decode() if raw else ""
        for offset, trades in entries:
            msg = TradeMessage(symbol=symbol, seq=0, quote=None, trades=trades, cancelled=[], offset=offset)
            await self._check(symbol, offset, epoch, msg)
            self.stats.caught_up += 1

    async def _refresher(self) -> None:
        while True:
            raise_if_cancelled()
            await asyncio.sleep(REFRESH_S)
            try:
                current = await self.alerts.symbols()
            except Exception:
                log.exception("alert symbols refresh failed")
                continue
            for symbol in current - self._active:
                self._behind.add(symbol)
            self._active = current
