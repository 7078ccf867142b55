"""`smarttrade keys` against `redis-cli --scan | head`, side by side on one private server.

    .venv/bin/python benchmarks/keys.py [--keys N] [--rounds R]

Fills the order-flow db of a private redis-server (never 6379) with N + 20% keys, then alternates,
R rounds each, as separate processes writing to a pipe:
  1. `redis-cli -n 1 --scan | head -N` (names only; the issue's reference);
  2. `smarttrade keys orderflow --limit N` (names, type and TTL, streamed; process start included);
  3. `smarttrade keys orderflow --limit N --json`;
  4. `smarttrade --version`: the process's start-up alone (imports), the floor under 2 and 3.
Reports the median wall time, the ratio to redis-cli, and smarttrade's peak RSS (wait4).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from smarttrade.redis.embedded import EmbeddedRedis, find_redis_binary

TARGET_RATIO = 3.0  # issue 9 item 15: within 3x of redis-cli


def fill(port: int, n: int) -> None:
    with redis.Redis(port=port, db=1) as r:
        pipe = r.pipeline(transaction=False)
        for i in range(n):
            pipe.set(f"orderflow:BENCH:{1_700_000_000 + i}", b'{"symbol":"BENCH","trades":[]}', ex=86_400)
            if i % 10_000 == 9_999:
                pipe.execute()
        pipe.execute()


def timed(cmd: list[str] | str, env: dict[str, str], shell: bool = False) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (MB) and stdout lines of one process (a shell pipeline for redis-cli)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, shell=shell, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    lines = sum(1 for _ in proc.stdout)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.stdout.close()
    if status != 0:
        raise SystemExit(f"{cmd!r} failed: status {status}")
    return wall, usage.ru_maxrss / 1024, lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    n = args.keys
    exe = str(Path(sys.executable).parent / "smarttrade")
    redis_cli = shutil.which("redis-cli") or str(Path(find_redis_binary()).with_name("redis-cli"))
    with tempfile.TemporaryDirectory(prefix="smarttrade-bench-keys-") as tmp:
        server = EmbeddedRedis(Path(tmp) / "redis", config={"save": "", "appendonly": "no"})
        server.start()
        try:
            fill(server.port, n + n // 5)
            env = {**os.environ, "REDIS_URL": server.url}
            names = ("redis-cli", "keys", "keys --json", "--version")
            runs: dict[str, list[tuple[float, float, int]]] = {name: [] for name in names}
            for _ in range(args.rounds):
                reference = f"{redis_cli} -p {server.port} -n 1 --scan | head -{n}"
                runs["redis-cli"].append(timed(reference, env, shell=True))
                ours = [exe, "keys", "orderflow", "--limit", str(n)]
                runs["keys"].append(timed(ours, env))
                runs["keys --json"].append(timed([*ours, "--json"], env))
                runs["--version"].append(timed([exe, "--version"], env))  # the start-up floor
        finally:
            server.stop(save=False)
    base = statistics.median(r[0] for r in runs["redis-cli"])
    print(f"{n:,} keys listed, median of {args.rounds} rounds, one private server, alternated")
    print(f"{'command':<14} {'wall s':>8} {'x redis-cli':>12} {'peak RSS MB':>12} {'lines':>9}")
    for name, rows in runs.items():
        wall = statistics.median(r[0] for r in rows)
        rss = max(r[1] for r in rows)
        print(f"{name:<14} {wall:>8.2f} {wall / base:>12.2f} {rss:>12.0f} {rows[-1][2]:>9,}")
    ratio = statistics.median(r[0] for r in runs["keys"]) / base
    verdict = "ok" if ratio <= TARGET_RATIO else "SLOWER THAN TARGET"
    print(f"keys / redis-cli = {ratio:.2f} (target <= {TARGET_RATIO:g}): {verdict}")


if __name__ == "__main__":
    main()
