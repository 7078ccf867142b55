"""Starting one symbol over: every key of its market data, bars, indicators, stream and checkpoints.

One place for it, because both `ingest --reset` and a resumed run whose accepted lines changed
(docs/ingest.md) need exactly the same set: leaving any part behind (a bar, a checkpoint) would
make the next run count trades twice or mix two histories.
"""

from __future__ import annotations

from collections.abc import Iterable

from smarttrade.keyspace import symbol_patterns
from smarttrade.redis.connections import redis_errors
from smarttrade.redis.topology import Topology
from smarttrade.stores.base import SCAN_COUNT


async def forget_symbols(topology: Topology, symbols: Iterable[str]) -> int:
    """Delete every key of these symbols (SCAN MATCH with a COUNT, UNLINK); the number deleted.

    Checkpoints of every source that wrote the symbol go too, so no source skips trades whose
    effect is gone."""
    deleted = 0
    with redis_errors(topology.url):
        for symbol in symbols:
            for store, pattern in symbol_patterns(symbol):
                client = topology.client(store)
                batch: list[bytes] = []
                async for key in client.scan_iter(match=pattern, count=SCAN_COUNT):
                    batch.append(key)
                    if len(batch) >= SCAN_COUNT:
                        deleted += int(await client.unlink(*batch))
                        batch = []
                if batch:
                    deleted += int(await client.unlink(*batch))
    return deleted
