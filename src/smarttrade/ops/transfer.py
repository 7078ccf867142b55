"""Logical per-store copies: ``export`` (DUMP + PTTL) and ``import`` (RESTORE with the TTL).

The file is JSON lines: a header naming the store, then one line per key with the key and DUMP
payload in base64 and the absolute expiry in Unix ms (RESTORE ... ABSTTL), so a key imported
later never outlives the TTL it had: keys that expired meanwhile are skipped and counted. DUMP
payloads are tied to the RDB version: an export from Redis 7 does not load into Redis 6.2.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import redis.asyncio as aioredis
import redis.exceptions as rexc

from smarttrade.errors import SmartTradeError
from smarttrade.keyspace import Store, family_of
from smarttrade.ops.keys import Clients, each
from smarttrade.redis.connections import redis_errors

FORMAT = "smarttrade-export"
VERSION = 1
BATCH = 500
Progress = Callable[[int], None]  # keys done so far


class TransferError(SmartTradeError):
    pass


@dataclass(frozen=True, slots=True)
class ExportResult:
    store: Store
    file: Path
    keys: int
    gone: int  # keys that expired or were deleted while we read them


async def _server_ms(client: aioredis.Redis) -> int:
    seconds, micros = await client.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def export_store(
    client: Clients, url: str, store: Store, db: int, file: Path, progress: Progress | None = None
) -> ExportResult:
    count = gone = 0
    tmp = file.with_name(file.name + ".part")
    try:
        fh = tmp.open("w")
    except OSError as exc:
        raise TransferError(f"cannot write {file}: {exc.strerror or exc}") from None
    try:
        count, gone = await _write_export(client, url, store, db, fh, progress)
        fh.close()
        tmp.replace(file)
    except OSError as exc:
        raise TransferError(f"cannot write {file}: {exc.strerror or exc}") from None
    finally:
        fh.close()
        tmp.unlink(missing_ok=True)
    return ExportResult(store, file, count, gone)


async def _write_export(
    clients: Clients, url: str, store: Store, db: int, fh: TextIO, progress: Progress | None
) -> tuple[int, int]:
    """Redis calls under redis_errors, file writes outside it: a full disk is not a Redis outage.
    Several clients (a cluster's primaries) are walked in turn, DUMP and PTTL on the key's node."""
    count = gone = 0
    nodes = each(clients)
    with redis_errors(url):
        version = str((await nodes[0].info("server")).get("redis_version", "?"))
    created = datetime.now(UTC).isoformat()
    header = {"format": FORMAT, "version": VERSION, "store": store.value, "db": db}
    fh.write(json.dumps({**header, "created": created, "redis_version": version}) + "\n")
    for client in nodes:
        count, gone = await _export_node(client, url, store, fh, progress, count, gone)
    return count, gone


async def _export_node(
    client: aioredis.Redis,
    url: str,
    store: Store,
    fh: TextIO,
    progress: Progress | None,
    count: int,
    gone: int,
) -> tuple[int, int]:
    """One server's keys of the store, appended to the file; the running totals back."""
    cursor = 0
    while True:
        with redis_errors(url):
            cursor, page = await client.scan(cursor, count=BATCH)
            keys = [k for k in page if family_of(k.decode(errors="surrogateescape"), store)]
            replies: list[Any] = []
            if keys:
                pipe = client.pipeline(transaction=False)
                for key in keys:
                    pipe.dump(key)
                    pipe.pttl(key)
                replies = await pipe.execute()
                now_ms = await _server_ms(client)
        for i, key in enumerate(keys):
            payload, pttl = replies[2 * i], int(replies[2 * i + 1])
            if payload is None or pttl == -2:
                gone += 1
                continue
            line = {
                "k": base64.b64encode(key).decode(),
                "x": now_ms + pttl if pttl >= 0 else None,
                "v": base64.b64encode(payload).decode(),
            }
            fh.write(json.dumps(line) + "\n")
            count += 1
        if progress and keys:
            progress(count)
        if cursor == 0:
            return count, gone


def read_header(file: Path) -> dict[str, Any]:
    try:
        with file.open() as fh:
            header = json.loads(fh.readline())
    except (OSError, ValueError) as exc:
        raise TransferError(f"{file}: not an export file ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise TransferError(f"{file}: not a smarttrade export (no {FORMAT!r} header)")
    if header.get("version") != VERSION:
        raise TransferError(f"{file}: export version {header.get('version')!r}; this build reads {VERSION}")
    try:
        Store(header.get("store"))
    except ValueError:
        raise TransferError(f"{file}: unknown store {header.get('store')!r} in the header") from None
    return header


def check_entries(file: Path, store: Store) -> int:
    """Validate every line; returns the number of keys. TransferError names the first bad line."""
    count = 0
    with file.open() as fh:
        fh.readline()
        for number, line in enumerate(fh, start=2):
            if not line.strip():
                continue
            key, _expiry, _payload = _entry(line, number, file)
            if not family_of(key.decode(errors="surrogateescape"), store):
                raise TransferError(f"{file} line {number}: key {key!r} is not a {store.value} key")
            count += 1
    return count


def count_lines(file: Path) -> int:
    with file.open("rb") as fh:
        return max(0, sum(1 for _ in fh) - 1)


@dataclass(frozen=True, slots=True)
class ImportResult:
    store: Store
    restored: int
    expired: int  # their TTL ran out since the export: not restored
    existed: int  # present already and --replace not given


def _entry(line: str, number: int, file: Path) -> tuple[bytes, int | None, bytes]:
    try:
        item = json.loads(line)
        key = base64.b64decode(item["k"], validate=True)
        expiry = item["x"]
        payload = base64.b64decode(item["v"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise TransferError(f"{file} line {number}: not an exported key ({exc})") from None
    if expiry is not None and (isinstance(expiry, bool) or not isinstance(expiry, int) or expiry < 0):
        raise TransferError(f"{file} line {number}: x (expiry) must be Unix milliseconds or null")
    return key, expiry, payload


async def import_store(
    client: aioredis.Redis,
    url: str,
    file: Path,
    replace: bool,
    progress: Progress | None = None,
) -> ImportResult:
    header = read_header(file)
    store = Store(header["store"])
    check_entries(file, store)  # the whole file, before the first RESTORE: all or nothing on bad input
    restored = expired = existed = 0
    with file.open() as fh:
        fh.readline()
        batch: list[tuple[bytes, int | None, bytes]] = []
        number = 1
        for line in fh:
            number += 1
            if not line.strip():
                continue
            key, expiry, payload = _entry(line, number, file)
            if not family_of(key.decode(errors="surrogateescape"), store):
                raise TransferError(f"{file} line {number}: key {key!r} is not a {store.value} key")
            batch.append((key, expiry, payload))
            if len(batch) >= BATCH:
                r, e, x = await _restore_batch(client, url, batch, replace)
                restored, expired, existed = restored + r, expired + e, existed + x
                batch.clear()
                if progress:
                    progress(restored + expired + existed)
        if batch:
            r, e, x = await _restore_batch(client, url, batch, replace)
            restored, expired, existed = restored + r, expired + e, existed + x
            if progress:
                progress(restored + expired + existed)
    return ImportResult(store, restored, expired, existed)


async def _restore_batch(
    client: aioredis.Redis, url: str, batch: list[tuple[bytes, int | None, bytes]], replace: bool
) -> tuple[int, int, int]:
    restored = expired = existed = 0
    with redis_errors(url):
        now_ms = await _server_ms(client)
        pipe = client.pipeline(transaction=False)
        sent = 0
        for key, expiry, payload in batch:
            if expiry is not None and expiry <= now_ms:
                expired += 1
                continue
            args: list[Any] = [key, expiry or 0, payload]
            if replace:
                args.append("REPLACE")
            if expiry is not None:
                args.append("ABSTTL")
            pipe.execute_command("RESTORE", *args)
            sent += 1
        if not sent:
            return restored, expired, existed
        replies = await pipe.execute(raise_on_error=False)
    for reply in replies:
        if isinstance(reply, rexc.ResponseError):
            text = str(reply)
            if text.startswith("BUSYKEY"):
                existed += 1
                continue
            if "payload version" in text or "checksum" in text:
                raise TransferError(
                    f"the server cannot read this export's payloads ({text}): "
                    "export and import between the same Redis version"
                )
            raise TransferError(f"RESTORE refused: {text}")
        restored += 1
    return restored, expired, existed
