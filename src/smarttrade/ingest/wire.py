"""A dedicated connection that carries commit rounds in order, several on the wire at once.

Rounds are packed here (redis-py's pipeline packs in Python, which costs more than building the
commit): the keys, many and short, by hiredis; the arguments, among them a commit's whole trades
text, as RESP bulk strings joined once (hiredis copies a long argument byte by byte, ~80 times
slower than a join). Replies are read back in the order sent. When the connection fails, every
round on the wire fails with it; the engine then resends what was not applied, and the script's
sequence check makes the resend apply each commit exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import deque
from collections.abc import Sequence

import hiredis
import redis.asyncio as aioredis
import redis.exceptions as rexc
from redis.asyncio.connection import AbstractConnection

from smarttrade.ingest.commit import Commit


class CommitWire:
    def __init__(self, client: aioredis.Redis, script: str) -> None:
        self.pool = client.connection_pool
        self.script = script
        self.sha = hashlib.sha1(script.encode()).hexdigest()
        self._conn: AbstractConnection | None = None
        self._broken = False
        self._closing = False  # close() began: failures from here on are the stop itself
        self._outbox: deque[tuple[bytes, int, asyncio.Future[list[object]]]] = deque()
        self._wire: deque[tuple[int, asyncio.Future[list[object]]]] = deque()  # sent, awaiting replies
        self._writer: asyncio.Future[None] | None = None
        self._reader: asyncio.Future[None] | None = None

    async def _connection(self) -> AbstractConnection:
        if self._conn is not None and self._broken:
            await self._conn.disconnect()  # a fresh socket: the old one's state is unknown
            self._broken = False
        if self._conn is None:
            self._conn = await self.pool.get_connection()
        return self._conn

    def send(self, commits: Sequence[Commit]) -> asyncio.Future[list[object]]:
        """Queue a round; the future resolves to one reply (or ResponseError) per commit."""
        future: asyncio.Future[list[object]] = asyncio.get_running_loop().create_future()
        parts: list[bytes | memoryview] = []
        for c in commits:
            _pack(parts, self.sha, c)
        payload = b"".join(parts)
        self._outbox.append((payload, len(commits), future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write())
        return future

    async def _write(self) -> None:
        """The only writer: rounds leave in the order they were queued, on the one connection."""
        while self._outbox:
            payload, count, future = self._outbox.popleft()
            try:
                conn = await self._connection()
                self._wire.append((count, future))
                await conn.send_packed_command(payload, check_health=False)
            except BaseException as exc:
                self._fail(exc)
                continue
            if self._reader is None or self._reader.done():
                self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        while self._wire:
            count, future = self._wire[0]
            replies: list[object] = []
            try:
                assert self._conn is not None
                for _ in range(count):
                    try:
                        replies.append(await self._conn.read_response())
                    except rexc.ResponseError as exc:
                        replies.append(exc)
            except BaseException as exc:
                self._fail(exc)
                return
            self._wire.popleft()
            if not future.done():
                future.set_result(replies)

    def _fail(self, exc: BaseException) -> None:
        """The connection's state is unknown: every round sent or queued fails; resend decides."""
        self._broken = True
        pending = [f for _, f in self._wire] + [f for _, _, f in self._outbox]
        self._wire.clear()
        self._outbox.clear()
        for future in pending:
            if future.done():
                continue
            # a stop, not a failure: nothing to report (redis-py may turn the cancel of a read
            # into a ConnectionError, so a closing wire cancels whatever the error)
            if self._closing or isinstance(exc, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(exc)

    async def call(self, commits: Sequence[Commit]) -> list[object]:
        return await self.send(commits)

    async def load(self) -> None:
        """SCRIPT LOAD (after NOSCRIPT: a restarted or flushed server)."""
        conn = await self._connection()
        await conn.send_command("SCRIPT", "LOAD", self.script)
        self.sha = (await conn.read_response()).decode()

    async def close(self) -> None:
        self._closing = True
        for task in (self._writer, self._reader):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._conn is not None:
            if self._broken:
                await self._conn.disconnect()
            await self.pool.release(self._conn)
            self._conn = None


def _pack(out: list[bytes | memoryview], sha: str, c: Commit) -> None:
    """EVALSHA of one commit in RESP, appended to ``out`` as pieces to join."""
    keys = hiredis.pack_command((len(c.keys), *c.keys))
    out.append(
        b"*%d\r\n$7\r\nEVALSHA\r\n$%d\r\n%s\r\n" % (3 + len(c.keys) + len(c.args), len(sha), sha.encode())
    )
    out.append(memoryview(keys)[keys.index(b"\r\n") + 2 :])  # less its own array header
    add = out.append
    for arg in c.args:
        if isinstance(arg, bytes | memoryview):
            data = arg
        else:
            data = (arg if isinstance(arg, str) else str(arg)).encode()
        add(b"$%d\r\n" % len(data))
        add(data)
        add(b"\r\n")
