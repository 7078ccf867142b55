"""Analytics benchmark, side by side in one run on one private redis-server:

    .venv/bin/python benchmarks/analytics.py        (also part of make bench)

1. cost of closing one bar for all indicators of 3 symbols x 3 timeframes (9 series);
2. full footprint metrics of a 500-level bar;
3. replay ingest throughput with analytics on (bars, per-bar footprints, indicators) and off,
   the same 2,000,000 synthetic trades, as separate processes.
Targets: analytics on >= 250,000 trades/s and >= 70% of the rate with it off.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import redis

from smarttrade.analytics.bars import Indicators
from smarttrade.analytics.footprint import metrics
from smarttrade.redis.embedded import EmbeddedRedis

sys.path.insert(0, str(Path(__file__).parent))
from ingest import replay  # the shared replay runner

TARGET_RATE, TARGET_RATIO = 250_000, 0.70


def indicator_cost(bars: int = 3000) -> float:
    """Microseconds to close one bar on 9 series (3 symbols x 3 timeframes)."""
    rng = np.random.default_rng(1)
    series = [Indicators() for _ in range(9)]
    closes = 125_000 + np.cumsum(rng.normal(0, 10, (bars, 9)), axis=0)
    started = time.perf_counter()
    for row in closes.tolist():
        for ind, c in zip(series, row, strict=True):
            ind.update(c + 5, c - 5, c)
    return (time.perf_counter() - started) / bars * 1e6


def footprint_cost(levels: int = 500, runs: int = 300) -> float:
    """Microseconds for every metric of one bar with ``levels`` price levels."""
    rng = np.random.default_rng(2)
    price = np.arange(100_000, 100_000 + 5 * levels, 5, dtype=np.int64)
    buy = rng.integers(0, 200, levels).astype(np.int64)
    sell = rng.integers(0, 200, levels).astype(np.int64)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        metrics(price, buy, sell)
        times.append(time.perf_counter() - started)
    return float(np.median(times)) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trades", type=int, default=2_000_000)
    args = parser.parse_args()
    ind_us = indicator_cost()
    fp_us = footprint_cost()
    print(f"indicators, one bar on 3 symbols x 3 timeframes: {ind_us:,.0f} us", flush=True)
    print(f"footprint metrics, one 500-level bar: {fp_us:,.0f} us", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="smarttrade-bench-"))
    best: dict[str, dict] = {}
    for round_ in range(2):  # alternate, each on a fresh server, keep each side's best
        for mode in ("false", "true"):
            server = EmbeddedRedis(
                workdir / f"redis-{mode}-{round_}",
                config={"save": "", "appendonly": "no", "maxmemory": "6gb"},
            )
            server.start()
            try:
                result = replay(server.url, args.trades, workdir, {"SMARTTRADE_ANALYTICS": mode})
                with redis.Redis(port=server.port, db=1) as r:
                    result["bars"] = sum(1 for _ in r.scan_iter(match="bars:*", count=1000))
            finally:
                server.stop(save=False)
            print(f"analytics {'on' if mode == 'true' else 'off'}", result, flush=True)
            if mode not in best or result["trades_per_s"] > best[mode]["trades_per_s"]:
                best[mode] = result
    off, on = best["false"], best["true"]
    assert off["bars"] == 0 < on["bars"], "the analytics switch did not take"
    ratio = on["trades_per_s"] / off["trades_per_s"]
    print()
    print(f"replay, analytics off      {off['trades_per_s']:>10,.0f} trades/s")
    rate_ok = "ok" if on["trades_per_s"] >= TARGET_RATE else "MISSED"
    print(
        f"replay, analytics on       {on['trades_per_s']:>10,.0f} trades/s   >= {TARGET_RATE:,}   {rate_ok}"
    )
    ratio_ok = "ok" if ratio >= TARGET_RATIO else "MISSED"
    print(f"on / off                   {ratio:>10.0%}              >= {TARGET_RATIO:.0%}      {ratio_ok}")
    print(f"peak RSS, analytics on     {on['peak_rss_mb']:>10.0f} MB")


if __name__ == "__main__":
    main()
