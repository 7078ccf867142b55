"""Where the ingest commits go: one CommitWire on a standalone or sentinel server, one per primary
on a Redis Cluster, each commit on the primary that owns its symbol's slot.

A cluster has no single connection pool, and a commit is one EVALSHA whose keys share the
symbol's hash tag, so the commit of a symbol goes as it is to its slot's primary. A round of
commits is split by primary (each symbol's commits stay in order: one symbol, one slot, one
wire) and its replies are put back in the round's order, so the engine sees the same wire as on
one server.

Faults: when a node cannot be reached, or answers MOVED (its slot moved, or its replica was
promoted), ASK or TRYAGAIN (a reshard is moving the slot's keys now), or CLUSTERDOWN (a failover
under way), the commits it held fail as a lost
connection does (``RouteChanged`` is a ConnectionError): the engine waits, checks that Redis did
not lose acknowledged commits, and resends what was not applied. The next round first reloads the
slot map. The script's sequence check makes each resent commit apply exactly once, wherever it
lands. Scripts are per node (Redis 7 no longer copies SCRIPT LOAD to replicas), so a promoted
replica answers NOSCRIPT: the engine's ``load`` then loads the script on every primary.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import redis.exceptions as rexc
from redis.crc import key_slot

from smarttrade.ingest.commit import Commit
from smarttrade.ingest.wire import CommitWire
from smarttrade.keyspace import Store
from smarttrade.redis.cluster import ClusterPools
from smarttrade.redis.connections import REDIS_FAILURES
from smarttrade.redis.topology import Topology

# replies that mean "not on this node (any more), or not now": the slot map must be reloaded
_MOVED = (rexc.AskError, rexc.ClusterDownError, rexc.TryAgainError)  # MovedError is an AskError


class RouteChanged(rexc.ConnectionError):
    """A commit was sent where its slot no longer is, or while the cluster was failing over.
    ``resharding``: its slot is moving between nodes now (ASK, TRYAGAIN), a wait of a moment."""

    def __init__(self, text: str, resharding: bool = False) -> None:
        super().__init__(text)
        self.resharding = resharding


def commit_wire(
    topology: Topology, script: str, wait_replicas: int = 0, wait_timeout_ms: int = 1000
) -> CommitWire | ClusterWire:
    """The wire the engine sends its commit rounds on: the one connection of today on a single
    server (no per-commit cost added there), a wire per primary on a cluster. ``wait_replicas``
    ends each round with WAIT on every wire (REDIS_WAIT_REPLICAS; see ingest/wire.py)."""
    wait = (wait_replicas, wait_timeout_ms)
    if isinstance(topology.pools, ClusterPools):
        return ClusterWire(topology.pools, script, wait)
    return CommitWire(topology.client(Store.QUOTES), script, *wait)


class ClusterWire:
    """CommitWire's interface (send, call, load, close) over a CommitWire per primary."""

    def __init__(self, pools: ClusterPools, script: str, wait: tuple[int, int] = (0, 1000)) -> None:
        self.pools = pools
        self.script = script
        self.wait = wait  # (replicas, timeout ms) of each node wire's closing WAIT
        self.nodes = pools.cluster.nodes_manager
        # by node name; kept for the run (a handful), so a round still in flight on a node that
        # lost its slots finishes there (its MOVED replies send it round again)
        self._wires: dict[str, CommitWire] = {}
        self._slot: dict[str, int] = {}  # symbol -> its slot (every key of a commit is in it)
        self._stale = not self.nodes.slots_cache
        self._queued = 0  # rounds waiting for the slot map: later rounds queue behind them
        self._lock = asyncio.Lock()  # FIFO: rounds waiting for the slot map keep their order
        self.refreshes = 0  # slot map reloads after a fault (tests and benchmarks read it)

    def wire_for(self, commit: Commit) -> tuple[str, CommitWire]:
        """The node holding the commit's slot now, and its wire."""
        slot = self._slot.get(commit.symbol)
        if slot is None:
            slot = self._slot[commit.symbol] = key_slot(commit.keys[0].encode())
        node = self.nodes.get_node_from_slot(slot)
        wire = self._wires.get(node.name)
        if wire is None:
            wire = self._wires[node.name] = self._new_wire(node.host, node.port)
        return node.name, wire

    def _new_wire(self, host: str, port: int) -> CommitWire:
        return CommitWire(self.pools.node(host, port), self.script, *self.wait)

    def send(self, commits: Sequence[Commit]) -> asyncio.Future[list[object]]:
        """Queue a round; the future resolves to one reply (or error) per commit, in order."""
        if self._stale or self._queued:
            self._queued += 1
            return asyncio.ensure_future(self._send_after_refresh(list(commits)))
        return self._dispatch(commits)

    async def _send_after_refresh(self, commits: list[Commit]) -> list[object]:
        try:
            async with self._lock:
                if self._stale:
                    try:
                        await self._refresh()
                    except REDIS_FAILURES as exc:  # still failing over: wait, resend
                        return [RouteChanged(f"cluster slot map unavailable: {exc}")] * len(commits)
                future = self._dispatch(commits)  # sent in turn; the replies may come later
        finally:
            self._queued -= 1
        return await future

    async def _refresh(self) -> None:
        await self.nodes.initialize()
        self._stale = False
        self.refreshes += 1

    def _dispatch(self, commits: Sequence[Commit]) -> asyncio.Future[list[object]]:
        loop = asyncio.get_running_loop()
        result: asyncio.Future[list[object]] = loop.create_future()
        if not commits:
            result.set_result([])
            return result
        replies: list[object] = [None] * len(commits)
        groups: dict[str, tuple[CommitWire, list[int]]] = {}
        try:
            for i, c in enumerate(commits):
                name, wire = self.wire_for(c)
                groups.setdefault(name, (wire, []))[1].append(i)
        except rexc.RedisClusterException as exc:  # a slot not covered: the map is out of date
            self._stale = True
            result.set_result([RouteChanged(str(exc))] * len(commits))
            return result
        left = len(groups)

        def settle(indexes: list[int], part: asyncio.Future[list[object]]) -> None:
            nonlocal left
            left -= 1
            if result.done():
                return
            if part.cancelled():  # the wire is closing: so is this round
                result.cancel()
                return
            failure = part.exception()
            for i, reply in zip(indexes, [failure] * len(indexes) if failure else part.result(), strict=True):
                if isinstance(reply, _MOVED):
                    reply = _route_changed(reply)
                if isinstance(reply, BaseException) and not isinstance(reply, rexc.ResponseError):
                    self._stale = True  # a node down, or a slot moved: reload the map before resending
                replies[i] = reply
            if left == 0:
                result.set_result(replies)

        for wire, indexes in groups.values():
            part = wire.send([commits[i] for i in indexes])
            part.add_done_callback(lambda f, idx=indexes: settle(idx, f))
        return result

    async def call(self, commits: Sequence[Commit]) -> list[object]:
        return await self.send(commits)

    async def load(self) -> None:
        """SCRIPT LOAD on every primary of the current slot map (after NOSCRIPT)."""
        if self._stale:
            await self._refresh()
        for node in self.nodes.get_nodes_by_server_type("primary"):
            wire = self._wires.get(node.name)
            if wire is None:
                wire = self._wires[node.name] = self._new_wire(node.host, node.port)
            await wire.load()

    async def close(self) -> None:
        for wire in self._wires.values():
            with contextlib.suppress(Exception):
                await wire.close()


def _route_changed(reply: rexc.ResponseError) -> RouteChanged:
    """The wait message names what happened (redis-py strips the error code from the text).
    MOVED is final: a reload of the slot map finds the new node. ASK and TRYAGAIN mean a reshard
    is moving the slot's keys: a commit whose keys are split between two nodes waits it out (a
    Lua script needs all its keys on one node)."""
    if isinstance(reply, rexc.MovedError):
        return RouteChanged(f"cluster slot {reply.slot_id} now at {reply.host}:{reply.port} (MOVED)")
    if isinstance(reply, rexc.AskError):
        where = f"{reply.host}:{reply.port}"
        return RouteChanged(f"cluster slot {reply.slot_id} being moved to {where} (ASK)", resharding=True)
    if isinstance(reply, rexc.TryAgainError):
        return RouteChanged(f"cluster slot being moved between nodes (TRYAGAIN {reply})", resharding=True)
    return RouteChanged(f"cluster failing over (CLUSTERDOWN {reply})")
