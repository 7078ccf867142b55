"""The ingest's trade stream (``stream:trades:SYMBOL``) as its readers see it: entry ids in order,
and whether the stream still holds everything after an offset.

The ingest commit trims the stream only from its head (``XADD MINID ~``) and never XDELs, so the
entries after an offset are all there when the oldest entry is at or before it. When the oldest
is later, Redis 7 can still tell a stream that began after the offset from a trimmed one: it
counts every entry ever added (``entries-added``), and a stream that has lost none holds that many.
(Its ``max-deleted-entry-id`` moves on XDEL only, not on a trim: no help here.) Redis 6.2 has
neither, and the answer is then "no": a reader falls back to a snapshot rather than risk a gap.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
import redis.exceptions as rexc


def entry_order(entry_id: str | bytes) -> tuple[int, int]:
    """A stream entry id as a comparable pair (``"12-3"`` -> (12, 3)); (0, 0) for none."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    if not text:
        return (0, 0)
    ms, _, seq = text.partition("-")
    return (int(ms), int(seq or 0))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else ("" if value is None else str(value))


async def max_deleted_id(client: aioredis.Redis, key: str) -> str | None:
    """Redis 7's ``max-deleted-entry-id`` (the newest XDELed entry: never one a trim removed);
    None on 6.2 (no such field) or for a missing stream."""
    try:
        info = await client.xinfo_stream(key)
    except rexc.ResponseError:  # no such key
        return None
    return _text(info.get("max-deleted-entry-id")) or None


async def holds_after(client: aioredis.Redis, key: str, offset: str) -> bool:
    """Whether no entry after ``offset`` was trimmed away (see the module docstring)."""
    if entry_order(offset) == (0, 0):
        return True
    first = await client.xrange(key, count=1)
    if not first or entry_order(first[0][0]) <= entry_order(offset):
        return True
    try:
        info = await client.xinfo_stream(key)
    except rexc.ResponseError:  # gone meanwhile
        return True
    added = info.get("entries-added")  # Redis 7; absent on 6.2
    return added is not None and int(added) == int(info["length"])
