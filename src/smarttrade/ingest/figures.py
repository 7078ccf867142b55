"""The figures a running ingester publishes for `monitor` and the exporter: its interface.

Ingest owns this hash (fields below); ops/published.py reads it. Keeping the writer here means the
ingester needs nothing from ops. Key: ``INGEST_STATS_PREFIX:SOURCE``, expiring INGEST_STATS_TTL
seconds after the ingester stops (docs/keyspace.md).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import redis.asyncio as aioredis

from smarttrade.keyspace import INGEST_STATS_PREFIX, INGEST_STATS_TTL

if TYPE_CHECKING:  # the type only: the exporter and monitor need not load the engine
    from smarttrade.ingest.engine import IngestStats


def figures_key(source: str) -> str:
    return f"{INGEST_STATS_PREFIX}:{source}"


async def publish_figures(client: aioredis.Redis, source: str, stats: IngestStats) -> None:
    """One HSET of lag, batch sizes and totals, with the hash's expiry refreshed."""
    key = figures_key(source)
    pipe = client.pipeline(transaction=False)
    pipe.hset(
        key,
        mapping={
            "lag_ms": f"{stats.lag_ms:.3f}",
            "batch": stats.last_batch,
            "max_batch": stats.max_batch,
            "trades": stats.trades,
            "commits": stats.commits,
            "ts": f"{time.time():.3f}",
        },
    )
    pipe.expire(key, INGEST_STATS_TTL)
    await pipe.execute()
