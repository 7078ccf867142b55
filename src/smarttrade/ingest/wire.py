"""A dedicated connection that carries commit rounds in order, several on the wire at once.

Rounds are packed here (redis-py's pipeline packs in Python, which costs more than building the
commit): the keys, many and short, by hiredis; the arguments, among them a commit's whole trades
text, as RESP bulk strings joined once (hiredis copies a long argument byte by byte, ~80 times
slower than a join). Replies are read back in the order sent. When the connection fails, every
round on the wire fails with it; the engine then resends what was not applied, and the script's
sequence check makes the resend apply each commit exactly once.

Two replies mean the server is not the master any more, whatever the connection class makes of
them: READONLY (a demoted master still up; Redis 6.2 wraps it in a script error, which redis-py's
sentinel connection does not recognise) fails the connection like a broken socket, so the
resend goes wherever the sentinels point now.

With REDIS_WAIT_REPLICAS=N each round ends with ``WAIT N REDIS_WAIT_TIMEOUT_MS`` in the same
payload (one more reply per round, not per commit). A round that applied something but reached
fewer than N replicas in time fails with NotReplicated, a timeout: the engine waits and resends
it, the sequence check turns the resend into a no-op on what was applied, and its own WAIT
covers every earlier write. So the engine's checkpoint only moves past commits N replicas hold,
and a failover to one of them loses nothing acknowledged. With N=0 the payload is unchanged.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import Sequence

import hiredis
import redis.asyncio as aioredis
import redis.exceptions as rexc
from redis.asyncio.connection import AbstractConnection

from smarttrade.ingest.commit import Commit
from smarttrade.redis.cancel import cancel_and_wait


class NotReplicated(rexc.TimeoutError):
    """WAIT reported fewer replicas than asked for within its timeout: the round is not safe yet."""


def demoted(reply: object) -> bool:
    """A reply from a server that is a replica now (the commit was not applied)."""
    return isinstance(reply, rexc.ReadOnlyError) or (
        isinstance(reply, rexc.ResponseError) and "-READONLY " in str(reply)
    )


class CommitWire:
    def __init__(
        self, client: aioredis.Redis, script: str, wait_replicas: int = 0, wait_timeout_ms: int = 1000
    ) -> None:
        self.pool = client.connection_pool
        self.script = script
        self.sha = hashlib.sha1(script.encode()).hexdigest()
        self.wait_replicas = wait_replicas
        self._wait = hiredis.pack_command(("WAIT", wait_replicas, wait_timeout_ms)) if wait_replicas else b""
        self.short_waits = 0  # rounds WAIT did not confirm in time (each was resent)
        self._conn: AbstractConnection | None = None
        self._broken = False
        self._closing = False  # close() began: failures from here on are the stop itself
        self._outbox: deque[tuple[bytes, int, asyncio.Future[list[object]]]] = deque()
        self._wire: deque[tuple[int, asyncio.Future[list[object]]]] = deque()  # sent, awaiting replies
        self._writer: asyncio.Future[None] | None = None
        self._reader: asyncio.Future[None] | None = None

    async def _connection(self) -> AbstractConnection:
        if self._conn is not None and self._broken:
            # a fresh connection from the pool: the old socket's state is unknown, and only the
            # pool's connect() asks the sentinels where the master is now (a send on a
            # disconnected connection reconnects to the address it had)
            await self._conn.disconnect()
            await self.pool.release(self._conn)
            self._conn = None
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
        if self._wait:
            parts.append(self._wait)
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
            except BaseException as exc:  # no connection (the node is down): this round fails too
                self._outbox.appendleft((payload, count, future))
                self._fail(exc)
                continue
            try:
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
                for _ in range(count + bool(self._wait)):
                    try:
                        replies.append(await self._conn.read_response())
                    except rexc.ResponseError as exc:
                        replies.append(exc)
            except BaseException as exc:
                self._fail(exc)
                return
            acked = replies.pop() if self._wait else None
            if any(demoted(r) for r in replies):
                self._fail(
                    rexc.ConnectionError("the server is a replica now (READONLY): asking for the master")
                )
                return
            self._wire.popleft()
            if future.done():
                continue
            short = self._wait and not (isinstance(acked, int) and acked >= self.wait_replicas)
            if short and any(isinstance(r, list) for r in replies):  # something applied: not safe yet
                self.short_waits += 1
                future.set_exception(
                    NotReplicated(
                        f"WAIT {self.wait_replicas}: {acked} replicas had the round in time "
                        "(REDIS_WAIT_REPLICAS, REDIS_WAIT_TIMEOUT_MS)"
                    )
                )
                continue
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
        await cancel_and_wait(self._writer, self._reader)
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
