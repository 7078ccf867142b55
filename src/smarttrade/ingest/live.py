"""The live API: trades handed over one at a time (a feed handler, a gateway), same guarantees.

``submit`` normalizes the trade and queues it. A lone trade goes out at once; while a commit is in
flight, trades gather and leave together as soon as it returns. When too much is queued, ``submit``
waits (backpressure).
"""

from __future__ import annotations

import asyncio

from smarttrade.feeds.chunk import Chunk
from smarttrade.feeds.record import TradeRecord
from smarttrade.ingest.deadletter import DeadLetters
from smarttrade.ingest.defaults import DEFAULT_TOLERANCE_S
from smarttrade.ingest.engine import Engine
from smarttrade.ingest.normalize import Normalizer
from smarttrade.models import encode

FLUSH_AT = 8192  # hand a full builder to the queue even while a commit runs


class LiveIngest:
    def __init__(
        self, engine: Engine, dead: DeadLetters | None = None, tolerance_s: float = DEFAULT_TOLERANCE_S
    ) -> None:
        self.engine = engine
        self.dead = dead or DeadLetters(None, engine.source)
        self.norm = Normalizer(self.dead, {}, tolerance_s)
        self.ordinal = 0
        self.rejected = 0
        engine.refill = self._take

    def _take(self) -> Chunk | None:
        builder = self.norm.builder
        return builder.take(self.ordinal) if len(builder) else None

    async def start(self) -> None:
        """Continue this source's sequence numbers (a second session must not reuse them) and
        start the engine. Live trades have no replayable position: nothing is skipped."""
        await self.engine.load_checkpoints()
        self.engine.skip_committed = False
        self.engine.start()

    async def submit(self, trade: TradeRecord) -> bool:
        """Queue one trade; False (and a dead letter) when it is rejected."""
        self.ordinal += 1
        error = self.norm.accept(trade, self.ordinal)
        if error is not None:
            self.rejected += 1
            self.dead.reject_record(self.ordinal, encode(trade), error)
            return False
        engine = self.engine
        if engine.idle:
            engine.wake()  # nothing in flight: this trade goes now
        elif len(self.norm.builder) >= FLUSH_AT:
            chunk = self._take()
            if chunk is not None:
                await engine.feed(chunk)  # waits while the queue is full
            await asyncio.sleep(0)  # a caller that never waits must still let the committer run
        return True

    async def flush(self) -> None:
        chunk = self._take()
        if chunk is not None:
            await self.engine.feed(chunk)
        self.dead.flush()
        await asyncio.sleep(0)

    async def close(self) -> None:
        """Commit everything submitted, then stop the engine."""
        await self.flush()
        await self.engine.close()
        self.dead.close()
