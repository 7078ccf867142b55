"""One reading of the server (INFO) and the rates between two readings.

``monitor``, ``alerts`` and the Prometheus collector all read the server through ``take``, so the
three always agree on what a figure means.

ops/s counts what clients send. INFO's command counters also count every command run inside a Lua
script (checked on Redis 6.2 and 7.x), so one ingest commit would read as dozens of ops; our
commit script adds what it ran to ``SCRIPT_CALLS_KEY`` and the rate subtracts it.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import redis.exceptions as rexc

from smarttrade.keyspace import SCRIPT_CALLS_KEY, current_layout, glob_escape
from smarttrade.ops.server import Admin
from smarttrade.stores.base import SCAN_COUNT


def _int(info: dict[str, Any], name: str) -> int:
    try:
        return int(info.get(name, 0))
    except (TypeError, ValueError):
        return 0


def _float(info: dict[str, Any], name: str) -> float:
    try:
        return float(info.get(name, 0.0))
    except (TypeError, ValueError):
        return 0.0


@dataclass(frozen=True, slots=True)
class Sample:
    at: float  # time.monotonic() when taken
    run_id: str
    uptime_s: int
    used_memory: int
    maxmemory: int
    maxmemory_policy: str
    frag_ratio: float  # mem_fragmentation_ratio: RSS / used, includes pages not yet returned to the OS
    allocator_frag_ratio: float  # jemalloc's own fragmentation: the one that active defrag can fix
    clients: int
    blocked_clients: int
    hits: int
    misses: int
    commands: int  # total_commands_processed: includes what scripts ran
    ops_per_sec: int  # the server's own instantaneous figure (scripts' commands included)
    evicted: int
    expired: int
    rdb_last_save: int
    rdb_changes: int
    rdb_bgsave_ok: bool
    keyspace: dict[int, tuple[int, int]] = field(default_factory=dict)  # db -> (keys, expiring)
    info: dict[str, Any] = field(default_factory=dict)
    script_calls: int = 0  # commands our Lua commits ran (SCRIPT_CALLS_KEY), within ``commands``

    @property
    def hit_rate(self) -> float | None:
        total = self.hits + self.misses
        return self.hits / total if total else None


async def script_calls(admin: Admin) -> int:
    """What our scripts ran so far (read next to INFO: a commit in between skews one window a bit).

    On a cluster the counters are per symbol, each on its slot's primary: a plain client of one
    primary (Topology.primaries) counts that primary's, next to its own INFO, so the rates of
    the primaries add up; the cluster client's SCAN covers them all."""
    client = admin.client
    try:
        if current_layout().hash_tags:  # one counter per symbol, in its commit's slot
            match = glob_escape(SCRIPT_CALLS_KEY) + ":*"
            keys = [k async for k in client.scan_iter(match=match, count=SCAN_COUNT)]
        else:
            keys = [SCRIPT_CALLS_KEY]
        values = [await client.hget(key, "calls") for key in keys]
    except (rexc.NoPermissionError, rexc.ResponseError):  # an ACL without it: scripts count fully
        return 0
    total = 0
    for value in values:
        with contextlib.suppress(ValueError):
            total += int(value or 0)
    return total


async def take(admin: Admin) -> Sample:
    calls = await script_calls(admin)
    info = await admin.info()  # the default sections hold every figure used here
    keyspace = {
        int(name[2:]): (_int(v, "keys"), _int(v, "expires"))
        for name, v in info.items()
        if name.startswith("db") and name[2:].isdigit() and isinstance(v, dict)
    }
    return Sample(
        at=time.monotonic(),
        run_id=str(info.get("run_id", "")),
        uptime_s=_int(info, "uptime_in_seconds"),
        used_memory=_int(info, "used_memory"),
        maxmemory=_int(info, "maxmemory"),
        maxmemory_policy=str(info.get("maxmemory_policy", "?")),
        frag_ratio=_float(info, "mem_fragmentation_ratio"),
        allocator_frag_ratio=_float(info, "allocator_frag_ratio"),
        clients=_int(info, "connected_clients"),
        blocked_clients=_int(info, "blocked_clients"),
        hits=_int(info, "keyspace_hits"),
        misses=_int(info, "keyspace_misses"),
        commands=_int(info, "total_commands_processed"),
        ops_per_sec=_int(info, "instantaneous_ops_per_sec"),
        evicted=_int(info, "evicted_keys"),
        expired=_int(info, "expired_keys"),
        rdb_last_save=_int(info, "rdb_last_save_time"),
        rdb_changes=_int(info, "rdb_changes_since_last_save"),
        rdb_bgsave_ok=str(info.get("rdb_last_bgsave_status", "ok")) == "ok",
        keyspace=keyspace,
        info=info,
        script_calls=calls,
    )


@dataclass(frozen=True, slots=True)
class Rates:
    seconds: float
    ops_s: float  # commands clients sent: an EVALSHA counts once
    evicted_s: float
    expired_s: float
    evicted: int  # during the window
    hits: int
    misses: int
    commands_s: float = 0.0  # every command Redis ran, scripts' included (total_commands_processed)

    @property
    def hit_rate(self) -> float | None:
        total = self.hits + self.misses
        return self.hits / total if total else None


def rates(before: Sample, after: Sample) -> Rates | None:
    """Per-second rates between two samples; None when the server restarted in between."""
    if before.run_id != after.run_id or after.at <= before.at:
        return None
    dt = after.at - before.at
    evicted = max(0, after.evicted - before.evicted)
    commands = max(0, after.commands - before.commands)
    scripts = after.script_calls - before.script_calls
    if scripts < 0:  # the counter started again (expired after a quiet week, or deleted)
        scripts = after.script_calls
    return Rates(
        seconds=dt,
        ops_s=max(0, commands - scripts) / dt,
        evicted_s=evicted / dt,
        expired_s=max(0, after.expired - before.expired) / dt,
        evicted=evicted,
        hits=max(0, after.hits - before.hits),
        misses=max(0, after.misses - before.misses),
        commands_s=commands / dt,
    )
