"""A stop the user asked for (SIGTERM, Ctrl-C), as a flag the long loops check.

The command's task is cancelled too, but a cancellation that lands inside a redis-py command can
come out as a ConnectionError that redis-py retries, so the cancel is lost and the run goes on.
The replay and live loops check this flag between chunks, so a stop always takes effect.
"""

from __future__ import annotations

import asyncio

_requested: list[str] = []


def request(reason: str) -> None:
    _requested.append(reason)


def clear() -> None:
    _requested.clear()


def check() -> None:
    """Raise CancelledError once a stop was requested: the same path as a cancel that arrived."""
    if _requested:
        raise asyncio.CancelledError(_requested[0])
