"""Figures our processes publish in Redis so that ``monitor`` and the exporter can read them.

INFO has one hit rate for the whole server, so each process that reads through the stores adds its
per-store hit and miss counts to one hash; a running ingester keeps a small hash of its lag and
batch sizes fresh (it expires seconds after the ingester stops). Keys: docs/keyspace.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from smarttrade.ingest.figures import PublishedFigures
from smarttrade.keyspace import (
    ALERTS_KEY,
    INGEST_STATS_PREFIX,
    OPS_TTL,
    STORE_HITS_KEY,
    Store,
    glob_escape,
)
from smarttrade.ops.alerts import Previous
from smarttrade.ops.sample import Sample
from smarttrade.stores.base import SCAN_COUNT, BaseStore


class HitPublisher:
    """Adds the stores' hit/miss counts since the last publish to the shared hash."""

    def __init__(self, stores: dict[Store, BaseStore]) -> None:
        self.stores = stores
        self.sent: dict[Store, tuple[int, int]] = dict.fromkeys(stores, (0, 0))

    async def publish(self, client: aioredis.Redis) -> None:
        pipe = client.pipeline(transaction=False)
        moved = False
        now: dict[Store, tuple[int, int]] = {}
        for store, obj in self.stores.items():
            hits, misses = obj.hits, obj.misses
            sent_hits, sent_misses = self.sent[store]
            now[store] = (hits, misses)
            if hits > sent_hits:
                pipe.hincrby(STORE_HITS_KEY, f"{store.value}:hits", hits - sent_hits)
                moved = True
            if misses > sent_misses:
                pipe.hincrby(STORE_HITS_KEY, f"{store.value}:misses", misses - sent_misses)
                moved = True
        if not moved:
            return
        pipe.expire(STORE_HITS_KEY, OPS_TTL)
        await pipe.execute()
        self.sent = now


async def store_hits(client: aioredis.Redis) -> dict[Store, tuple[int, int]]:
    """Published (hits, misses) per store, all processes together, since the hash was created."""
    raw = await client.hgetall(STORE_HITS_KEY)
    out = dict.fromkeys(Store, (0, 0))
    for field, value in raw.items():
        name, _, kind = field.decode(errors="replace").partition(":")
        try:
            store = Store(name)
            count = int(value)
        except ValueError:
            continue
        hits, misses = out[store]
        out[store] = (count, misses) if kind == "hits" else (hits, count) if kind == "misses" else out[store]
    return out


@dataclass(frozen=True, slots=True)
class IngestFigures:
    source: str
    lag_ms: float
    batch: int  # trades in the last commit round
    max_batch: int
    trades: int
    commits: int
    age_s: float  # since the ingester last published


async def _figure_hashes(client: aioredis.Redis) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """The ingest figure hashes on one server (SCAN with a COUNT, never KEYS), read on it."""
    match = f"{glob_escape(INGEST_STATS_PREFIX)}:*"
    keys = [k async for k in client.scan_iter(match=match, count=SCAN_COUNT)]
    if not keys:
        return []
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hgetall(key)
    return list(zip(keys, await pipe.execute(), strict=True))


async def ingest_figures(clients: list[aioredis.Redis]) -> list[IngestFigures]:
    """Every running ingester's last published figures, from each server whose SCAN covers the
    keys (every primary of a cluster: a figure hash lives on its slot's primary)."""
    out = []
    now = time.time()
    found = [pair for client in clients for pair in await _figure_hashes(client)]
    for key, raw in found:
        if not raw:
            continue
        try:
            got = PublishedFigures.from_hash(raw)
        except ValueError:
            continue  # written by hand: not ours to show
        source = key.decode(errors="replace").removeprefix(INGEST_STATS_PREFIX + ":")
        out.append(
            IngestFigures(
                source, got.lag_ms, got.batch, got.max_batch, got.trades, got.commits, max(0.0, now - got.ts)
            )
        )
    return sorted(out, key=lambda f: f.source)


async def previous_check(client: aioredis.Redis) -> Previous | None:
    """What the last ``smarttrade alerts`` saw, so this one can judge what happened since."""
    raw = await client.hgetall(ALERTS_KEY)
    try:
        fields = {k.decode(): v.decode() for k, v in raw.items()}
        return Previous(fields["run_id"], int(fields["hits"]), int(fields["misses"]), int(fields["evicted"]))
    except (KeyError, ValueError, UnicodeDecodeError):
        return None


async def save_check(client: aioredis.Redis, sample: Sample) -> None:
    fields = {"run_id": sample.run_id, "hits": sample.hits, "misses": sample.misses}
    fields["evicted"] = sample.evicted
    pipe = client.pipeline(transaction=False)
    pipe.hset(ALERTS_KEY, mapping=fields)
    pipe.expire(ALERTS_KEY, OPS_TTL)
    await pipe.execute()
