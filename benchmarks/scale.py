"""Scale benchmarks (issue 12): what a Redis Cluster costs and gives next to one server.

    .venv/bin/python benchmarks/scale.py [--trades N] [--rounds R] [--binary PATH] [--replicas K]

Measured in one run, on private servers started here (loopback, free ports, never 6379):
  1. replay ratio: `smarttrade ingest --synthetic` of the same feed (6 symbols, two on each of
     the 3 primaries, analytics on) as a separate process, on one standalone server and on a
     3-primary cluster (tests/topologies.start_cluster, one replica each by default); trades/s
     until the last commit is acknowledged, rounds alternated and the median kept;
  2. Redis CPU per trade per primary: INFO cpu (used_cpu_user + used_cpu_sys) delta of each
     primary over its replay, divided by the trades committed on it (its symbols' checkpoint
     line counts), so capacity per added primary reads off directly.

Each section is a function returning a dict; main() prints them as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import tempfile
from datetime import date
from pathlib import Path

import redis
from redis.crc import key_slot

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the topology harness
from smarttrade.keyspace import CHECKPOINT_PREFIX
from smarttrade.redis.embedded import EmbeddedRedis, find_redis_binary
from topologies import Cluster, start_cluster

# Two symbols per primary of a 3-primary `redis-cli --cluster create` (slots 0-5460, 5461-10922,
# 10923-16383): WIN 1280, WDOF26 166 | DOL 5591, WDO 9085 | WDOG26 14230, INDG26 13568.
SYMBOLS = ("DOL", "WDO", "WIN", "WDOF26", "WDOG26", "INDG26")
DAY = date(2025, 11, 24)
TARGET_RATIO = 0.85  # the cluster path may cost at most 15% (issue 12)


def _cpu(port: int) -> float:
    """The server's CPU seconds so far (user + sys, main thread and helpers alike)."""
    with redis.Redis(port=port) as r:
        info = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _committed(port: int) -> dict[str, int]:
    """Lines committed per symbol on one server, from the checkpoints' counts."""
    out: dict[str, int] = {}
    with redis.Redis(port=port) as r:
        for key in r.scan_iter(match=f"{CHECKPOINT_PREFIX}:*", count=500):
            symbol = key.decode().rpartition(":")[2].strip("{}")
            out[symbol] = out.get(symbol, 0) + int(r.hget(key, "count") or 0)
    return out


async def _replay(workdir: Path, trades: int, env: dict[str, str], ports: list[int]) -> dict:
    """One `smarttrade ingest --synthetic` run on emptied servers (ours: FLUSHALL on each of
    ``ports``, the primaries), and the CPU each of them spent on it."""
    exe = Path(sys.executable).parent / "smarttrade"
    args = ["ingest", "--synthetic", "--count", str(trades), "--seed", "7", "--start-day", DAY.isoformat()]
    args += ["--symbols", ",".join(SYMBOLS), "--json", "--dead-letter", "dead.jsonl"]
    for port in ports:
        with redis.Redis(port=port) as r:
            r.flushall()
    before = {p: _cpu(p) for p in ports}
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = await asyncio.create_subprocess_exec(
        str(exe),
        *args,
        env={**os.environ, "COLUMNS": "200", **env},
        cwd=workdir,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 600)
    if proc.returncode != 0:
        raise SystemExit(f"replay failed ({proc.returncode}): {stderr.decode()[-2000:]}")
    stats = json.loads(stdout)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the ingester, now reaped
    ingester_s = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    if stats["trades"] != trades:
        raise SystemExit(f"replay committed {stats['trades']} of {trades} trades")
    return {
        "trades_per_s": trades / stats["elapsed_s"],
        "ingester_cpu_us_per_trade": ingester_s * 1e6 / trades,
        "cpu_s": {p: _cpu(p) - before[p] for p in ports},
        "committed": {p: sum(_committed(p).values()) for p in ports},
    }


async def replay_ratio(binary: str, workdir: Path, trades: int, rounds: int = 3, replicas: int = 1) -> dict:
    """Replay trades/s on a 3-primary cluster (``replicas`` per primary) over one standalone
    server (same feed, same run), and Redis CPU per trade on each primary (µs).

    With replicas, the primaries also feed them every commit's effects, and on a 2-core machine
    the replicas' work competes with everything else: the standalone server with as many
    replicas (what sentinel runs) is measured too, so routing and replication read apart."""
    workdir.mkdir(parents=True, exist_ok=True)
    plain = {"save": "", "appendonly": "no"}
    servers: list[EmbeddedRedis] = []
    cluster: Cluster | None = None

    def server(name: str, **config: str) -> EmbeddedRedis:
        made = EmbeddedRedis(workdir / name, config={**plain, **config}, binary=binary)
        servers.append(made)
        made.start()
        return made

    try:
        one = server("standalone")
        kinds: dict[str, tuple[dict[str, str], list[int]]] = {
            "standalone": ({"REDIS_URL": one.url, "REDIS_MODE": "standalone"}, [one.port]),
        }
        if replicas:
            held = server("standalone-replicated")
            for i in range(replicas):  # REPLICAOF sent, not configured: 6.2 reads it as one word
                with redis.Redis(port=server(f"standalone-replica{i}").port) as r:
                    r.replicaof("127.0.0.1", held.port)
            kinds["standalone_replicated"] = (
                {"REDIS_URL": held.url, "REDIS_MODE": "standalone"},
                [held.port],
            )
        cluster = start_cluster(workdir / "cluster", binary, primaries=3, replicas=replicas)
        primaries = cluster.primaries()
        owners = {s: cluster.node_for_slot(key_slot(s.encode())).port for s in SYMBOLS}
        kinds["cluster"] = (
            {"REDIS_MODE": "cluster", "REDIS_CLUSTER_NODES": ",".join(cluster.seeds)},
            [n.port for n in primaries],
        )
        runs: dict[str, list[dict]] = {kind: [] for kind in kinds}
        for _ in range(rounds):  # alternated: the machine's other load hits each alike
            for kind, (env, ports) in kinds.items():
                runs[kind].append(await _replay(workdir, trades, env, ports))
    finally:
        if cluster is not None:
            cluster.stop()
        for made in servers:
            made.stop(save=False)

    def rate(kind: str) -> float:
        return statistics.median(r["trades_per_s"] for r in runs[kind])

    def cpu_per_trade(kind: str, port: int) -> float | None:
        cpu = sum(r["cpu_s"][port] for r in runs[kind])
        done = sum(r["committed"][port] for r in runs[kind])
        return round(cpu * 1e6 / done, 3) if done else None

    per_primary = {
        node.addr: {
            "symbols": sorted(s for s, port in owners.items() if port == node.port),
            "trades_per_run": sum(r["committed"][node.port] for r in runs["cluster"]) // rounds,
            "redis_cpu_us_per_trade": cpu_per_trade("cluster", node.port),
        }
        for node in primaries
    }
    ratio = rate("cluster") / rate("standalone")
    out = {
        "binary": binary,
        "trades": trades,
        "rounds": rounds,
        "replicas_per_primary": replicas,
        "symbols": list(SYMBOLS),
        "trades_per_s": {kind: round(rate(kind)) for kind in runs},
        "all_trades_per_s": {kind: [round(r["trades_per_s"]) for r in v] for kind, v in runs.items()},
        "ingester_cpu_us_per_trade": {
            kind: round(statistics.median(r["ingester_cpu_us_per_trade"] for r in v), 3)
            for kind, v in runs.items()
        },
        "ratio": round(ratio, 3),
        "target_ratio": TARGET_RATIO,
        "meets_target": ratio >= TARGET_RATIO,
        "redis_cpu_us_per_trade": {
            kind: cpu_per_trade(kind, ports[0]) for kind, (_, ports) in kinds.items() if kind != "cluster"
        },
        "per_primary": per_primary,
    }
    if replicas:
        out["ratio_to_replicated_standalone"] = round(rate("cluster") / rate("standalone_replicated"), 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--replicas", type=int, default=1, help="replicas per cluster primary")
    parser.add_argument("--binary", default=None, help="redis-server (default: the one on PATH)")
    args = parser.parse_args()
    binary = str(Path(args.binary).resolve()) if args.binary else find_redis_binary(prefer_path=True)
    with tempfile.TemporaryDirectory(prefix="smarttrade-scale-") as tmp:
        result = asyncio.run(replay_ratio(binary, Path(tmp), args.trades, args.rounds, args.replicas))
    print(json.dumps({"replay_ratio": result}, indent=2))


if __name__ == "__main__":
    main()
