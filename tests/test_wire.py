"""The commit wire never leaves a round unanswered: every round resolves or fails."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
import redis.exceptions as rexc
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from smarttrade.ingest.wire import CommitWire
from smarttrade.redis.embedded import free_port


async def test_a_round_fails_when_no_connection_can_be_made() -> None:
    """A node that is down (a killed cluster primary, a master mid-failover): the round fails
    with a connection error, so the engine waits and resends. It used to wait forever: the round
    had left the queue but was not yet on the wire when the connection could not be made."""
    client = aioredis.Redis(port=free_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    wire = CommitWire(client, "return 1")
    try:
        for _ in range(2):  # the first connection, then the retry after a failure
            with pytest.raises(rexc.ConnectionError):
                await asyncio.wait_for(wire.send([]), 10)
    finally:
        await wire.close()
        await client.aclose()
