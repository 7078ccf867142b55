"""The ingest lease: two ingesters never run the same source's same symbols at once.

One hash per source (keyspace.lease_key), a field per running ingester: its symbol set (or ``*``
for "whatever the input holds"), host, pid and expiry in the server's own clock (TIME, so the
hosts' clocks do not matter). One Lua script takes, renews and releases: it drops expired fields,
refuses a holder that overlaps another (either is ``*``, or their sets intersect) and sets the
key's TTL to its longest holder's expiry, so a source nobody runs leaves nothing behind.

The holder renews every third of the TTL (SMARTTRADE_INGEST_LEASE_S). A renewal refused (another
ingester holds the symbols: its field was written after ours expired) or impossible for a whole
TTL (Redis away: the field may have expired and been taken) stops the work before the server-side
expiry: the local deadline is counted from when the last good renewal was *sent*, so it comes no
later than the server's. Both end the command with exit 2 and one line. Within that deadline
nobody else can have taken the symbols, so a renewal that finds its field gone (Redis restarted
empty, a failover lost the write) simply writes it again.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import TypeVar

import redis.asyncio as aioredis

from smarttrade.errors import SmartTradeError
from smarttrade.keyspace import lease_key
from smarttrade.redis.connections import REDIS_FAILURES, one_line_reason, redis_errors

T = TypeVar("T")

RELEASE_TIMEOUT_S = 2.0  # a clean exit does not hang on a Redis that went away
RETRY_S = 0.5  # a failed renewal is tried again this soon, until the lease's deadline
STOP_GRACE_S = 5.0  # how long the stopped work gets to end (the engine aborts its rounds)
ANY = "*"

# KEYS[1] the lease; ARGV: mode (take|release), holder id, symbols ("*" or A,B,..), host, pid,
# ttl ms, a stale holder's field and value to drop first (or ''). Replies {1, ttl_ms} granted;
# {0, holder_json, expires_in_ms, holder_id} refused (overlap). A renewal is a take: a field that
# vanished while its holder still counts it (Redis restarted empty, a failover lost the write) is
# written again, unless an overlapping holder came in meanwhile.
LEASE_SCRIPT = """
redis.replicate_commands()
-- a write that cannot grow memory first: Redis then lets the script's HSET (an overwrite of the
-- same size) run on a full server, so a full Redis (which the engine waits out) keeps the lease
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[6]))
if ARGV[7] ~= '' and redis.call('HGET', KEYS[1], ARGV[7]) == ARGV[8] then
  redis.call('HDEL', KEYS[1], ARGV[7])  -- a stale claim (its process is gone), unchanged since read
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local mode, me, want, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[6])
local function set_of(s)
  local r = {}
  for x in string.gmatch(s, '[^,]+') do r[x] = true end
  return r
end
local wanted = set_of(want)
local function overlaps(other)
  if want == '*' or other == '*' then return true end
  for x in string.gmatch(other, '[^,]+') do
    if wanted[x] then return true end
  end
  return false
end
local fields = redis.call('HGETALL', KEYS[1])
local longest, refused = 0, nil
for i = 1, #fields, 2 do
  local id, h = fields[i], cjson.decode(fields[i + 1])
  if h.expires <= now then
    redis.call('HDEL', KEYS[1], id)
  elseif id ~= me then
    if mode ~= 'release' and refused == nil and overlaps(h.symbols) then refused = i end
    if h.expires > longest then longest = h.expires end
  end
end
if refused ~= nil then
  return {0, fields[refused + 1], cjson.decode(fields[refused + 1]).expires - now, fields[refused]}
end
if mode == 'release' then
  redis.call('HDEL', KEYS[1], me)
else
  local expires = now + ttl
  redis.call('HSET', KEYS[1], me, cjson.encode({symbols = want, host = ARGV[4], pid = tonumber(ARGV[5]),
    expires = expires}))
  if expires > longest then longest = expires end
end
if longest > 0 then redis.call('PEXPIREAT', KEYS[1], longest) else redis.call('DEL', KEYS[1]) end
return {1, ttl}
"""


@dataclass(frozen=True)
class Holder:
    """Another ingester's claim, as the lease hash holds it."""

    symbols: str
    host: str
    pid: int
    expires_in_s: float

    def describe(self) -> str:
        what = "all its symbols" if self.symbols == ANY else f"symbols {self.symbols}"
        return f"{what}, host {self.host}, pid {self.pid}, expires in {self.expires_in_s:.0f} s"


class LeaseHeld(SmartTradeError):
    """Another ingester runs this source's symbols (or some of them)."""

    exit_code = 2

    def __init__(self, source: str, holder: Holder) -> None:
        super().__init__(
            f"source {source} is being ingested by another ingester ({holder.describe()}); "
            "give each ingester its own symbols (docs/ingest.md, Several ingesters) or wait"
        )
        self.holder = holder


class LeaseLost(SmartTradeError):
    """The lease could not be kept: the ingester stopped committing."""

    exit_code = 2


def symbol_set(symbols: Collection[str] | None) -> str:
    """The lease's spelling of a claim: the sorted symbols, or ``*`` for all of the input's."""
    return ANY if symbols is None else ",".join(sorted(set(symbols)))


class Lease:
    """This process's claim on ``source`` for ``symbols`` (None: every symbol of the input)."""

    def __init__(
        self,
        client: aioredis.Redis,
        source: str,
        symbols: Collection[str] | None,
        ttl_s: int,
        url: str = "redis",
    ) -> None:
        self.client = client
        self.url = url  # for one-line errors
        self.source = source
        self.key = lease_key(source)
        self.symbols = symbol_set(symbols)
        self.ttl_s = ttl_s
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.id = f"{self.host}:{self.pid}:{secrets.token_hex(4)}"  # a pid reused later is not us
        self.renewals = 0

    async def _call(self, mode: str, stale: tuple[object, object] = ("", "")) -> list[object]:
        args = (mode, self.id, self.symbols, self.host, self.pid, self.ttl_s * 1000, *stale)
        return await self.client.eval(LEASE_SCRIPT, 1, self.key, *args)  # type: ignore[no-any-return]

    def _holder(self, reply: list[object]) -> Holder:
        raw = reply[1]
        data = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
        return Holder(str(data["symbols"]), str(data["host"]), int(data["pid"]), int(reply[2]) / 1000)  # type: ignore[call-overload]

    async def take(self) -> None:
        """Claim the symbols, or raise LeaseHeld naming the ingester that has (some of) them."""
        with redis_errors(self.url):
            reply = await self._call("take")
            if reply[0] != 1 and self._dead(self._holder(reply)):  # killed on this host: no wait
                reply = await self._call("take", (reply[3], reply[1]))
        if reply[0] != 1:
            raise LeaseHeld(self.source, self._holder(reply))

    def _dead(self, holder: Holder) -> bool:
        """A holder on this host whose process is gone (kill -9): its claim is stale now."""
        if holder.host != self.host or holder.pid == self.pid:
            return False
        try:
            os.kill(holder.pid, 0)
        except ProcessLookupError:
            return True
        except OSError:  # alive, another user's
            return False
        return False

    async def renew(self) -> None:
        """Extend the claim; LeaseLost when an overlapping ingester holds it now."""
        reply = await self._call("take")
        if reply[0] != 1:
            raise LeaseLost(
                f"lease on source {self.source} lost: another ingester holds it now "
                f"({self._holder(reply).describe()}); stopped committing"
            )
        self.renewals += 1

    async def release(self) -> None:
        """Give the claim back (a clean exit), so the next run starts at once.

        A renewal cancelled mid-reply (Ctrl-C) can leave its connection in the pool still
        waiting for that reply; redis-py then refuses the next read on it (RuntimeError). The
        pool's connections are dropped and the release tried once more on a fresh one."""
        for attempt in range(2):
            try:
                await asyncio.wait_for(self._call("release"), RELEASE_TIMEOUT_S)
                return
            except RuntimeError:
                if attempt:
                    return
                pool = getattr(self.client, "connection_pool", None)  # a cluster client has one per node
                if pool is not None:
                    await pool.disconnect()
            except (*REDIS_FAILURES, TimeoutError):
                return

    async def hold(self, work: Callable[[], Awaitable[T]]) -> T:
        """Take the lease, run ``work()`` while renewing it, release it at the end. A lost lease
        cancels the work (no further commit is sent) and raises LeaseLost."""
        await self.take()
        task = asyncio.ensure_future(work())
        lost: LeaseLost | None = None
        try:
            lost = await self._renew_while(task)
            if lost is None:
                return await task
            task.cancel()
            await asyncio.wait([task], timeout=STOP_GRACE_S)
            raise lost
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait([task], timeout=STOP_GRACE_S)
            if lost is None:
                await self.release()

    async def _renew_while(self, task: asyncio.Future[T]) -> LeaseLost | None:
        """Renew every third of the TTL until ``task`` ends; the reason it could not, if so."""
        every = self.ttl_s / 3
        good = time.monotonic()  # when the last granted take/renew was sent
        next_at = good + every
        while True:
            done, _ = await asyncio.wait([task], timeout=max(0.0, next_at - time.monotonic()))
            if done:
                return None
            sent, deadline = time.monotonic(), good + self.ttl_s
            try:
                if sent >= deadline:  # this process stood still (a stop, a swap storm) too long
                    raise TimeoutError("not renewed in time")
                await asyncio.wait_for(self.renew(), deadline - sent)
                good, next_at = sent, sent + every
            except LeaseLost as exc:
                return exc
            except (*REDIS_FAILURES, TimeoutError) as exc:
                if time.monotonic() >= deadline:
                    return LeaseLost(
                        f"lease on source {self.source} lost: not renewed for SMARTTRADE_INGEST_LEASE_S="
                        f"{self.ttl_s} s ({one_line_reason(exc)}); stopped committing"
                    )
                next_at = min(deadline, time.monotonic() + RETRY_S)
