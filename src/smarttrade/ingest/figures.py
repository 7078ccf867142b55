"""The figures a running ingester publishes for `monitor` and the exporter: its interface.

Ingest owns this hash (fields below); ops/published.py reads it. Keeping the writer here means the
ingester needs nothing from ops. Key: ``INGEST_STATS_PREFIX:SOURCE``, expiring INGEST_STATS_TTL
seconds after the ingester stops (docs/keyspace.md).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import msgspec
import redis.asyncio as aioredis

from smarttrade.keyspace import INGEST_STATS_PREFIX, INGEST_STATS_TTL

if TYPE_CHECKING:  # the type only: the exporter and monitor need not load the engine
    from smarttrade.ingest.engine import IngestStats


def figures_key(source: str) -> str:
    return f"{INGEST_STATS_PREFIX}:{source}"


class PublishedFigures(msgspec.Struct, frozen=True):
    """The hash's fields, named once for the writer here and the readers in ops."""

    lag_ms: float
    batch: int  # trades in the last commit round
    max_batch: int
    trades: int
    commits: int
    ts: float  # when it was published (epoch seconds)

    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes]) -> PublishedFigures:
        """ValueError when a field is missing or not a number (a hash written by hand)."""
        text = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in raw.items()}
        try:
            return msgspec.convert(text, cls, strict=False)
        except msgspec.ValidationError as exc:
            raise ValueError(str(exc)) from None


async def publish_figures(client: aioredis.Redis, source: str, stats: IngestStats) -> None:
    """One HSET of lag, batch sizes and totals, with the hash's expiry refreshed."""
    figures = PublishedFigures(
        round(stats.lag_ms, 3), stats.last_batch, stats.max_batch, stats.trades, stats.commits, time.time()
    )
    key = figures_key(source)
    pipe = client.pipeline(transaction=False)
    pipe.hset(key, mapping=msgspec.structs.asdict(figures))
    pipe.expire(key, INGEST_STATS_TTL)
    await pipe.execute()
