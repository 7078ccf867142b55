"""The hub's pub/sub connection(s), per topology, behind one small interface (docs/gateway.md,
"Cluster, sentinel and several gateways").

- ``ClassicSubscriber`` (standalone, sentinel): one PubSub on the orderflow client; PSUBSCRIBE
  ``trades:*``, SUBSCRIBE the probe and plain channels. In sentinel mode that client is
  sentinel-managed, so redis-py's reconnect asks the sentinels for the current master. redis-py
  reconnects and resubscribes silently: a connect callback reports it as a gap.
- ``ClusterSubscriber``: a PubSub per current primary. With sharded pub/sub (Redis >= 7.0) each
  symbol's ``trades:{SYM}`` channel is SSUBSCRIBEd (through redis-py's ClusterPubSub, which routes
  it to its slot's primary) and the canary goes on one channel per primary, hashed into that
  primary's slots, so a lost shard subscription fails the probe. Without it (6.2) the commit
  PUBLISHes, which a cluster broadcasts: one node's PSUBSCRIBE sees every symbol. Either way the
  expired-key notifications are per node, so every primary's connection subscribes to them.
  redis-py 8.1's ClusterPubSub does NOT follow a killed primary by itself (measured, see the doc:
  15 s after the failover its reads still raised ConnectionError in a loop and nothing arrived):
  any error, a slot map that moved, or the server dropping a shard subscription because its slot
  moved to another node (a reshard), makes ``next`` raise ``Resubscribe``; the hub then reopens
  everything from a fresh slot map and catches its sockets up by offset.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

from redis.asyncio.client import PubSub
from redis.crc import key_slot

from smarttrade.keyspace import Store, expired_channel, trades_channel, trades_pattern
from smarttrade.redis.cancel import cancel_and_wait, raise_if_cancelled
from smarttrade.redis.connections import REDIS_FAILURES
from smarttrade.redis.topology import Topology

log = logging.getLogger(__name__)
MAX_TAG_TRIES = 100_000  # hash tags tried to land a probe channel in each primary's slots
MESSAGE_TYPES = ("message", "pmessage", "smessage")  # the rest are (un)subscribe replies


class Resubscribe(Exception):
    """The subscription is broken or stale: reopen it (and catch up by offset)."""


async def sharded_pubsub(topology: Topology) -> bool:
    """Whether this topology's trades go by SPUBLISH: a cluster whose servers have it (>= 7.0).
    Must agree with the commit script's choice (redis/scripts.py INGEST_COMMIT_CLUSTER)."""
    if topology.mode != "cluster":
        return False
    info = await topology.primaries()[0].info("server")
    return int(str(info.get("redis_version", "0")).split(".")[0]) >= 7


def probe_channels(base: str, slots: dict[str, Iterable[int]]) -> dict[str, str]:
    """One canary channel per primary (node name -> channel), hashed into that node's slots."""
    owner = {slot: name for name, owned in slots.items() for slot in owned}
    out: dict[str, str] = {}
    for i in range(MAX_TAG_TRIES):
        if len(out) == len(slots):
            break
        channel = f"{base}:{{p{i}}}"
        name = owner.get(key_slot(channel.encode()))
        if name is not None and name not in out:
            out[name] = channel
    return out


class ClassicSubscriber:
    """One PubSub: PSUBSCRIBE trades:*, SUBSCRIBE the probe and plain channels."""

    sharded = False

    def __init__(self, topology: Topology, probe_base: str) -> None:
        self.redis = topology.client(Store.ORDERFLOW)
        self.probe_base = probe_base
        self.probes = [probe_base]
        self.expired = expired_channel(topology.db(Store.SESSIONS))
        self.gap = False
        self._ps: Any = None

    async def open(self, symbols: Iterable[str], channels: Iterable[str]) -> None:
        self._ps = self.redis.pubsub(ignore_subscribe_messages=True)
        await self._ps.psubscribe(trades_pattern())
        await self._ps.subscribe(*self.probes, self.expired, *channels)
        # redis-py reconnects and resubscribes by itself, silently: what was published meanwhile
        # is lost to pub/sub, so every reconnect is a gap the hub catches up by offset
        self._ps.connection.register_connect_callback(self._on_reconnect)

    def _on_reconnect(self, _connection: object) -> None:
        self.gap = True

    async def add_symbols(self, symbols: Iterable[str]) -> None:
        """The pattern covers every symbol already."""

    async def add_channels(self, channels: list[str]) -> None:
        await self._ps.subscribe(*channels)

    async def next(self, timeout: float) -> dict[str, Any] | None:
        return await self._ps.get_message(timeout=timeout)

    async def more(self) -> dict[str, Any] | None:
        return await self._ps.get_message(timeout=0)

    async def publish_probe(self, token: bytes) -> list[str]:
        await self.redis.publish(self.probe_base, token)
        return self.probes

    def check(self) -> str | None:
        """Why delivery is known broken now (None: no known fault)."""
        return None

    async def aclose(self) -> None:
        if self._ps is not None:
            with contextlib.suppress(*REDIS_FAILURES):
                await self._ps.aclose()


class ClusterSubscriber:
    """A PubSub per current primary, each read by its own task into one queue (see module doc)."""

    def __init__(self, topology: Topology, probe_base: str, sharded: bool) -> None:
        self.topology = topology
        self.cluster = topology.client(Store.ORDERFLOW)
        self.sharded = sharded
        self.probe_base = probe_base
        self.expired = expired_channel(0)
        self.gap = False
        self.probes: list[str] = []
        self._probe_by_node: dict[str, str] = {}
        self._cps: Any = None  # the ClusterPubSub (sharded)
        self._subs: dict[str, PubSub] = {}  # node name -> its PubSub
        self._queue: asyncio.Queue[dict[str, Any] | BaseException] = asyncio.Queue()
        self._tasks: list[asyncio.Task] = []
        self._symbols: set[str] = set()
        self._broken: str | None = None

    async def open(self, symbols: Iterable[str], channels: Iterable[str]) -> None:
        await self.cluster.nodes_manager.initialize()  # a fresh slot map: who is primary now
        primaries = self.cluster.get_primaries()
        slots: dict[str, list[int]] = {n.name: [] for n in primaries}
        for slot, nodes in self.cluster.nodes_manager.slots_cache.items():
            if nodes and nodes[0].name in slots:
                slots[nodes[0].name].append(slot)
        self._symbols = set(symbols)
        self._queue = asyncio.Queue()
        self._broken = None
        if self.sharded:
            self._probe_by_node = probe_channels(self.probe_base, slots)
            self._cps = self.cluster.pubsub()
            await self._cps.ssubscribe(
                *self._probe_by_node.values(), *(trades_channel(s) for s in sorted(self._symbols))
            )
            self._subs = dict(self._cps.node_pubsub_mapping)
        else:
            self._probe_by_node = {primaries[0].name: self.probe_base}
            pools = self.topology.pools
            self._subs = {n.name: pools.node(n.host, n.port).pubsub() for n in primaries}  # type: ignore[attr-defined]
            await self._subs[primaries[0].name].psubscribe(trades_pattern())
            await self._subs[primaries[0].name].subscribe(self.probe_base)
        self.probes = list(self._probe_by_node.values())
        for sub in self._subs.values():
            await sub.subscribe(self.expired)  # expired-key events are per node
        await self.add_channels(list(channels))
        self._tasks = [asyncio.create_task(self._pump(name, sub)) for name, sub in self._subs.items()]

    async def _pump(self, name: str, sub: PubSub) -> None:
        """Read one node's connection into the queue; an error ends it and says so.

        We never SUNSUBSCRIBE while pumping, so a ``sunsubscribe`` is the server's: the channel's
        slot moved to another node (Redis drops a slot's shard subscriptions when it loses the
        slot). Left alone, that symbol's trades would go to a node nobody listens on while every
        canary still answered."""
        try:
            while True:
                raise_if_cancelled()
                msg = await sub.get_message(ignore_subscribe_messages=False, timeout=1.0)
                if msg is None:
                    continue
                if msg["type"] == "sunsubscribe":
                    channel = msg["channel"]
                    text = channel.decode(errors="replace") if isinstance(channel, bytes) else channel
                    raise Resubscribe(f"{text} left {name}: its slot moved")
                if msg["type"] in MESSAGE_TYPES:
                    self._queue.put_nowait(msg)
        except asyncio.CancelledError:
            raise
        except Resubscribe as exc:
            self._queue.put_nowait(exc)
        except REDIS_FAILURES as exc:
            self._broken = f"shard subscription on {name} lost: {exc}"
            self._queue.put_nowait(Resubscribe(self._broken))

    async def add_symbols(self, symbols: Iterable[str]) -> None:
        new = set(symbols) - self._symbols
        if self.sharded and new:
            await self._cps.ssubscribe(*(trades_channel(s) for s in sorted(new)))
            self._symbols |= new
            if set(self._cps.node_pubsub_mapping) != set(self._subs):
                raise Resubscribe("the shard subscriptions moved to other nodes")

    async def add_channels(self, channels: list[str]) -> None:
        """Plain PUBLISH is broadcast to every node: one node's subscription hears them."""
        if channels:
            await next(iter(self._subs.values())).subscribe(*channels)

    async def next(self, timeout: float) -> dict[str, Any] | None:
        try:
            item = await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            if self.sharded and set(self._cps.node_pubsub_mapping) != set(self._subs):
                raise Resubscribe("redis-py moved shard subscriptions: reopening") from None
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    async def more(self) -> dict[str, Any] | None:
        try:
            item = self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    async def publish_probe(self, token: bytes) -> list[str]:
        """The canary takes the trades' path: SPUBLISH into each primary's slots."""
        if self.sharded:
            await asyncio.gather(*(self.cluster.spublish(ch, token) for ch in self.probes))
        else:
            await self.cluster.publish(self.probe_base, token)
        return self.probes

    def check(self) -> str | None:
        return self._broken

    async def aclose(self) -> None:
        await cancel_and_wait(*self._tasks)
        self._tasks = []
        closing = [self._cps] if self._cps is not None else list(self._subs.values())
        for ps in closing:
            with contextlib.suppress(*REDIS_FAILURES, Exception):
                await ps.aclose()
        self._cps, self._subs = None, {}


Subscriber = ClassicSubscriber | ClusterSubscriber


async def subscriber_for(topology: Topology, probe_base: str) -> Subscriber:
    if topology.mode == "cluster":
        return ClusterSubscriber(topology, probe_base, await sharded_pubsub(topology))
    return ClassicSubscriber(topology, probe_base)
