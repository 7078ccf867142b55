"""Stopping a task that may be inside a redis-py command.

redis-py 8.1 can lose a cancellation that lands inside a command: the command returns normally
(its retry wrapper sees the CancelledError and re-raises it; the loss happens outside it, in
``execute_command``) and the task runs on. Measured: a PING cancelled at a random moment finished
normally about 1 time in 5, on a fresh and on a pooled connection alike; in a tight PING loop up
to 33 of 40 cancels were lost. A ``task.cancel()`` followed by ``await task``
then waits forever (``smarttrade info`` in sentinel mode hung on its sentinel follower that way).
The task still counts the request (``Task.cancelling()``), so a loop that carries on after
Redis errors checks it each turn (``raise_if_cancelled``), and a stop cancels again until the task
ends, within a bound (``cancel_and_wait``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger(__name__)

RECANCEL_S = 1.0  # a cancelled task's own clean-up gets this long before the next cancel
STOP_TIMEOUT_S = 5.0


def raise_if_cancelled() -> None:
    """End the current task if a cancel was asked for and lost inside redis-py: call it at the
    top of every loop that goes on after a Redis error or a command that returned normally."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def cancel_and_wait(*tasks: asyncio.Future[Any] | None, timeout: float = STOP_TIMEOUT_S) -> bool:
    """Cancel ``tasks`` (None ones are skipped) until each has ended, or ``timeout`` passed.
    True when all ended. What they raised is retrieved here: a stop wants them gone, not their
    errors."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pending = {t for t in tasks if t is not None and not t.done()}
    while pending:
        left = deadline - loop.time()
        if left <= 0:
            log.warning("%d task(s) did not stop within %.1f s: %s", len(pending), timeout, pending)
            return False
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=min(RECANCEL_S, left))
    for task in tasks:
        if task is not None and task.done() and not task.cancelled():
            task.exception()
    return True
