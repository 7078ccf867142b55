"""A background Redis action every few seconds (published figures, a session kept alive).

Shared by the ingester, the demo and every command's hit counts, so it lives below all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from smarttrade.redis.connections import REDIS_FAILURES

STOP_WAIT_S = 5.0


@asynccontextmanager
async def periodic(period_s: float, action: Callable[[], Awaitable[None]]) -> AsyncIterator[None]:
    """Run ``action`` every ``period_s`` while the block runs, ignoring Redis failures.

    Stopped by an event, not by cancelling mid-command: redis-py can turn a cancellation inside a
    command into a ConnectionError, which the loop would swallow and go on forever.
    """
    stop = asyncio.Event()

    async def loop() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), period_s)
                return
            with contextlib.suppress(*REDIS_FAILURES):
                await action()

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        stop.set()
        with contextlib.suppress(TimeoutError):  # stuck in a command: wait_for cancels it
            await asyncio.wait_for(task, STOP_WAIT_S)
