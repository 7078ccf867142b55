"""Which source a file is: found by its content, not its path (docs/ingest.md).

Each file source has a small permanent record in Redis (keyspace.SOURCE_PREFIX): its format, how
many bytes of it were ingested, a hash of those bytes, and a hash of its first bytes (the head) to
find it again. A file whose head matches a record and whose first ``bytes`` bytes hash to it is
that source: a moved, copied or renamed file resumes, a grown one continues. A head that matches
while the ingested part does not means that part changed: refused, since resuming would mix two
histories. The record is written before the first commit (bytes 0) and advances as a run reads
(every second and at the end; never backwards), so it covers what was read, which includes what is
committed; the checkpoints stay the truth of what is committed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis

from smarttrade.errors import SmartTradeError
from smarttrade.keyspace import SOURCE_PREFIX, glob_escape, source_key
from smarttrade.redis.connections import redis_errors

HEAD_BYTES = 4096  # enough to tell files apart (a header line and the first trades)
SCAN_COUNT = 200
_READ = 1 << 20
EMPTY_SHA1 = hashlib.sha1().hexdigest()


class SourceChanged(SmartTradeError):
    """The already-ingested part of a source's input is not what was ingested."""


@dataclass(frozen=True, slots=True)
class SourceRecord:
    name: str
    format: str
    bytes: int  # ingested so far (read to the end by a run)
    hash: str  # sha1 of those bytes
    head_len: int
    head: str  # sha1 of the first head_len bytes
    rejected: int = 0  # lines the last full run dead-lettered
    paths: str = ""  # where it was last read (resolved, space-separated)


def _chunks(paths: Sequence[Path], limit: int | None) -> Iterator[bytes]:
    """The files' bytes in order, as one stream, up to ``limit`` bytes."""
    left = limit
    for path in paths:
        with path.open("rb") as fh:
            while left is None or left > 0:
                block = fh.read(_READ if left is None else min(_READ, left))
                if not block:
                    break
                if left is not None:
                    left -= len(block)
                yield block


def content_hash(paths: Sequence[Path], limit: int) -> tuple[str, int]:
    """sha1 of the first ``limit`` bytes (fewer if the files are shorter), and how many there were."""
    digest, n = hashlib.sha1(), 0
    for block in _chunks(paths, limit):
        digest.update(block)
        n += len(block)
    return digest.hexdigest(), n


def content_size(paths: Sequence[Path]) -> int:
    return sum(p.stat().st_size for p in paths)


def _decode(name: str, raw: dict[bytes, bytes]) -> SourceRecord | None:
    try:
        return SourceRecord(
            name,
            raw[b"format"].decode(),
            int(raw[b"bytes"]),
            raw[b"hash"].decode(),
            int(raw[b"head_len"]),
            raw[b"head"].decode(),
            int(raw.get(b"rejected", b"0")),
            raw.get(b"paths", b"").decode(errors="replace"),
        )
    except (KeyError, ValueError, UnicodeDecodeError):
        return None  # not one of ours: ignored


async def read_record(client: aioredis.Redis, url: str, name: str) -> SourceRecord | None:
    with redis_errors(url):
        raw = await client.hgetall(source_key(name))
    return _decode(name, raw) if raw else None


async def _records(client: aioredis.Redis, url: str) -> Iterator[SourceRecord]:
    found = []
    prefix = SOURCE_PREFIX + ":"
    with redis_errors(url):
        async for key in client.scan_iter(match=glob_escape(prefix) + "*", count=SCAN_COUNT):
            name = key.decode(errors="replace")[len(prefix) :]
            raw = await client.hgetall(key)
            rec = _decode(name, raw) if raw else None
            if rec is not None:
                found.append(rec)
    return iter(sorted(found, key=lambda r: (-r.bytes, r.name)))


def _changed(rec: SourceRecord, paths: Sequence[Path]) -> bool:
    digest, n = content_hash(paths, rec.bytes)
    return n < rec.bytes or digest != rec.hash


async def identify(
    client: aioredis.Redis,
    url: str,
    fmt: str,
    paths: Sequence[Path],
    default: str,
    explicit: bool,
    allow_changed: bool = False,
) -> tuple[str, SourceRecord | None]:
    """The source name of these files and its record (None: a new source, named ``default``).

    ``explicit``: ``default`` was given by the user (--source): only that record is considered.
    ``allow_changed`` (a reset): a changed input is not refused.
    """
    what = ", ".join(str(p) for p in paths)
    if explicit:
        rec = await read_record(client, url, default)
        if rec is not None and not allow_changed and (rec.format != fmt or _changed(rec, paths)):
            raise _refusal(what, rec, paths)
        return default, rec
    heads: dict[int, str] = {}
    here = _where(paths)
    same_path: SourceRecord | None = None
    for rec in await _records(client, url):  # the most ingested first
        if rec.format != fmt:
            continue
        if rec.paths == here:
            same_path = same_path or rec
        if rec.head_len == 0:
            continue  # an empty input's record says nothing about any file
        if rec.head_len not in heads:
            heads[rec.head_len], n = content_hash(paths, rec.head_len)
            if n < rec.head_len:
                heads[rec.head_len] = ""
        if heads[rec.head_len] != rec.head:
            continue
        # The first (largest) source these files start like decides: the same source, grown or
        # not; or its ingested part changed, refused, even if a smaller record would match.
        if not _changed(rec, paths) or allow_changed:
            return rec.name, rec
        raise _refusal(what, rec, paths)
    if same_path is not None and same_path.bytes > 0:
        # Edited in place so that even its first bytes differ (a line changed, CRLF endings):
        # not a new file to ingest again in full.
        if allow_changed:
            return same_path.name, same_path
        raise _refusal(what, same_path, paths)
    return default, None


def _where(paths: Sequence[Path]) -> str:
    return " ".join(str(p.resolve()) for p in paths)[:1000]


def _refusal(what: str, rec: SourceRecord, paths: Sequence[Path]) -> SourceChanged:
    size = content_size(paths)
    how = (
        f"is {size:,} bytes, shorter than the {rec.bytes:,} bytes source {rec.name} ingested"
        if size < rec.bytes
        else f"differs from what source {rec.name} ingested in its first {rec.bytes:,} bytes"
    )
    return SourceChanged(
        f"{what} {how} ({rec.format}; the input changed, it did not just grow): start that source "
        f"over with `--reset`, or ingest this as a new source with `--source NEW_NAME`"
    )


def head_of(paths: Sequence[Path]) -> tuple[str, int]:
    return content_hash(paths, HEAD_BYTES)


async def write_record(
    client: aioredis.Redis,
    url: str,
    name: str,
    fmt: str,
    paths: Sequence[Path],
    ingested: tuple[int, str] = (0, EMPTY_SHA1),
    rejected: int = 0,
) -> None:
    """Record that ``name``'s first ``ingested[0]`` bytes, whose sha1 is ``ingested[1]``, were read
    by a run (0: a new source, just its head)."""
    head, head_len = head_of(paths)
    size, digest = ingested
    mapping = {
        "format": fmt,
        "bytes": size,
        "hash": digest,
        "head_len": head_len,
        "head": head,
        "rejected": rejected,
        "paths": _where(paths),
    }
    with redis_errors(url):
        await client.hset(source_key(name), mapping=mapping)


async def forget_record(client: aioredis.Redis, url: str, name: str) -> None:
    with redis_errors(url):
        await client.unlink(source_key(name))
