"""Stopping tasks that are inside redis-py commands (smarttrade.redis.cancel): redis-py can turn a
cancel into a ConnectionError that it, or our loop, retries, so one cancel is not enough."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from smarttrade.redis.cancel import cancel_and_wait, raise_if_cancelled
from smarttrade.redis.connections import REDIS_FAILURES
from smarttrade.redis.embedded import EmbeddedRedis


async def test_a_task_that_loses_a_cancel_is_cancelled_again() -> None:
    lost = []

    async def stubborn() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            lost.append(1)  # what redis-py's retry does with it: carry on
        await asyncio.sleep(60)

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    assert await cancel_and_wait(task, timeout=5)
    assert lost == [1] and task.cancelled()


async def test_a_task_that_never_stops_is_given_up_on_in_time() -> None:
    async def deaf() -> None:
        while True:
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                continue

    task = asyncio.create_task(deaf())
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert not await cancel_and_wait(task, timeout=0.3)
    assert loop.time() - started < 5
    task.get_coro().close()  # type: ignore[union-attr]


async def test_loops_of_real_commands_stop(redis_server: EmbeddedRedis) -> None:
    """A loop like ours over real PINGs (Redis errors retried), cancelled at many moments: with
    ``raise_if_cancelled`` each turn, every one stops. Without it, about 1 cancel in 5 went on
    (measured on redis-py 8.1), and the loop below spends nearly all its time inside a PING, so
    re-cancelling alone did not stop it in 10 s once in 12 runs."""
    client = aioredis.Redis(port=redis_server.port)
    lost = 0
    try:
        for i in range(40):
            started = asyncio.Event()

            async def pinging(started: asyncio.Event) -> None:
                nonlocal lost
                while True:
                    try:
                        raise_if_cancelled()
                    except asyncio.CancelledError:
                        lost += 1  # a cancel redis-py swallowed, caught here
                        raise
                    started.set()
                    try:
                        await client.ping()
                    except REDIS_FAILURES:
                        await asyncio.sleep(0.01)

            task = asyncio.create_task(pinging(started))
            await started.wait()
            for _ in range(i % 8):
                await asyncio.sleep(0)
            loop = asyncio.get_running_loop()
            began = loop.time()
            assert await cancel_and_wait(task, timeout=10), f"round {i} did not stop"
            assert loop.time() - began < 0.5, f"round {i} waited for a second cancel"
    finally:
        await client.aclose()
    print(f"{lost} of 40 cancels were lost inside redis-py and caught by raise_if_cancelled")
