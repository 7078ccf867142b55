"""From parsed lines to committed-ready trades: order checks, side classification, cancels.

Normalization is deterministic in the input order, so a resumed run that re-reads the input from
the start rebuilds exactly the state (last prices, sides, cancel window, held trades) an
uninterrupted run has.

A trade's time is checked against its symbol's clock (the latest accepted time). A replay never
lets one trade move that clock far ahead on its own: a trade more than the future tolerance ahead
(or a symbol's first trade) is held until the symbol's next trade. If that one is not more than
the late tolerance before it, the jump was real (a session gap) and both go on; otherwise the held
trade was an outlier and is dead-lettered. Live feeds (no next trade to wait for) are checked
against the wall clock instead.
"""

from __future__ import annotations

import time
from array import array
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from smarttrade.feeds.chunk import SIDE_DEFAULT, SIDE_QUOTE, SIDE_SOURCE, SIDE_TICK, ChunkBuilder
from smarttrade.feeds.files import Line, Parsed
from smarttrade.feeds.record import BUY, SELL, UNKNOWN, TradeRecord
from smarttrade.ingest.commit import ordinal_digest
from smarttrade.ingest.deadletter import DeadLetters
from smarttrade.ingest.defaults import DEFAULT_FUTURE_S, DEFAULT_TOLERANCE_S

CANCEL_WINDOW = 200_000  # trades remembered per source for B3 cancels
FUTURE_LIMIT_S = 86_400  # replays: a trade stamped further ahead of the wall clock is rejected
_REFRESH = 4096  # trades between two reads of the wall clock (live)
_TALLY_EVERY = 65_536  # ordinals gathered before they are added to a symbol's tally


class Committed(Protocol):
    """Where a symbol's committed lines end, and what they were (engine.Checkpoint)."""

    ordinal: int
    count: int | None
    digest: int | None


@dataclass(frozen=True, slots=True)
class Changed:
    """A symbol whose accepted lines up to its checkpoint are not the ones committed."""

    symbol: str
    committed: int  # lines the checkpoint counts
    accepted: int  # lines accepted now up to the same position


@dataclass(slots=True)
class SymbolState:
    last_price: int = 0
    last_side: int = UNKNOWN
    max_time_us: int = 0


def classify(rec: TradeRecord, state: SymbolState) -> tuple[int, int]:
    """The aggressor side and where it came from.

    The quote rule first (at or above the ask: buy; at or below the bid: sell; inside the spread,
    the nearer side), then the tick rule (up: buy, down: sell, unchanged: the previous side). The
    first trade of a symbol with neither is a buy, marked "default".
    """
    if rec.side != UNKNOWN:
        return rec.side, SIDE_SOURCE
    if rec.bid and rec.ask and rec.ask >= rec.bid:
        if rec.price >= rec.ask:
            return BUY, SIDE_QUOTE
        if rec.price <= rec.bid:
            return SELL, SIDE_QUOTE
        twice = 2 * rec.price
        if twice != rec.bid + rec.ask:
            return (BUY if twice > rec.bid + rec.ask else SELL), SIDE_QUOTE
    if state.last_price:
        if rec.price > state.last_price:
            return BUY, SIDE_TICK
        if rec.price < state.last_price:
            return SELL, SIDE_TICK
        if state.last_side != UNKNOWN:
            return state.last_side, SIDE_TICK
    return BUY, SIDE_DEFAULT


@dataclass(slots=True)
class _Held:
    rec: TradeRecord
    ordinal: int
    line: Line | None


class Normalizer:
    def __init__(
        self,
        dead: DeadLetters,
        skip: Mapping[str, Committed],
        tolerance_s: float = DEFAULT_TOLERANCE_S,
        window: int = CANCEL_WINDOW,
        future_s: float = DEFAULT_FUTURE_S,
        replay: bool = False,
    ) -> None:
        self.dead = dead
        self.skip = skip  # per symbol: lines up to its ordinal are committed already
        self.tolerance_us = int(tolerance_s * 1e6)
        self.future_us = int(future_s * 1e6)
        self.replay = replay  # hold jumps for confirmation (files); else the wall clock (live)
        self.window_size = window
        self.states: dict[str, SymbolState] = {}
        # (symbol, trade id) -> (price, qty, side, side source, time) of recent trades
        self.window: OrderedDict[tuple[str, str], tuple[int, int, int, int, int]] = OrderedDict()
        self.builder = ChunkBuilder()
        self.skipped = 0  # records already committed by an earlier run
        self.accepted = 0  # records accepted (committed before or queued now)
        self.held: dict[str, _Held] = {}
        self.changed: dict[str, Changed] = {}
        # accepted lines up to each checkpoint: (count, digest) so far, and ordinals not yet added
        self._tally: dict[str, list[int]] = {}
        self._seen: dict[str, array] = {}
        self._checked: set[str] = set()
        self._until_clock = 0
        self._horizon()

    def _horizon(self) -> None:
        """The latest time a trade may carry: the wall clock plus a day (replays) or plus the
        future tolerance (live)."""
        ahead = FUTURE_LIMIT_S * 1e6 if self.replay else self.future_us
        self.horizon_us = int(time.time() * 1e6 + ahead)
        self._until_clock = _REFRESH

    def feed(self, item: Parsed) -> None:
        """One parsed line: accepted into the builder, held, or dead-lettered with its reason."""
        if item.error is not None:
            self.dead.reject(item.line, item.error)
            return
        assert item.record is not None
        error = self.accept(item.record, item.line.ordinal, item.line)
        if error is not None:
            self.dead.reject(item.line, error)

    def accept(self, rec: TradeRecord, ordinal: int, line: Line | None = None) -> str | None:
        """Check, classify and queue (or hold) one trade; the reason when it is rejected."""
        state = self.states.get(rec.symbol)
        if state is None:
            state = self.states[rec.symbol] = SymbolState()
        held = self.held.get(rec.symbol)
        if rec.cancel:
            if held is not None:  # it goes first, so the symbol's lines stay in order
                self._release(held, state)
            kept = self.window.pop((rec.symbol, rec.trade_id), None)
            if kept is None:
                return f"cancel: trade id {rec.trade_id!r} of {rec.symbol} is not known"
            price, qty, side, source, time_us = kept
            if (rec.price, rec.qty) != (price, qty):
                self.window[(rec.symbol, rec.trade_id)] = kept  # not this trade's cancel
                return f"cancel: trade id {rec.trade_id!r} of {rec.symbol} has another price or quantity"
            original = TradeRecord(rec.symbol, price, qty, side, time_us, rec.trade_id, cancel=True)
            self._add(original, side, source, ordinal)
            return None
        self._until_clock -= 1
        if self._until_clock <= 0 or not self.replay:  # live: the wall clock of each trade
            self._horizon()
        if rec.time_us > self.horizon_us:
            ahead = (rec.time_us - time.time() * 1e6) / 1e6
            if self.replay:  # never let one mistyped date hold back every later trade
                return f"time: {ahead / 86_400:.1f} days in the future"
            return f"time: {ahead:.3f} s ahead of the clock (future tolerance {self.future_us / 1e6:g} s)"
        if held is not None:
            del self.held[rec.symbol]
            if rec.time_us < held.rec.time_us - self.tolerance_us:
                self._outlier(held, rec)
            else:
                self._release(held, state)
        if self.replay and (not state.max_time_us or rec.time_us > state.max_time_us + self.future_us):
            if rec.trade_id and (rec.symbol, rec.trade_id) in self.window:
                return f"trade_id: {rec.trade_id!r} of {rec.symbol} was already seen"
            self.held[rec.symbol] = _Held(rec, ordinal, line)
            return None
        return self._take_in(rec, state, ordinal)

    def _release(self, held: _Held, state: SymbolState) -> None:
        self.held.pop(held.rec.symbol, None)
        error = self._take_in(held.rec, state, held.ordinal)
        if error is not None:
            self._reject_held(held, error)

    def _outlier(self, held: _Held, after: TradeRecord) -> None:
        behind = (held.rec.time_us - after.time_us) / 1e6
        self._reject_held(
            held,
            f"time: {behind:.3f} s ahead of the next {held.rec.symbol} trade, an outlier "
            f"(future tolerance {self.future_us / 1e6:g} s, late tolerance {self.tolerance_us / 1e6:g} s)",
        )

    def _reject_held(self, held: _Held, error: str) -> None:
        if held.line is not None:
            self.dead.reject(held.line, error)

    def _take_in(self, rec: TradeRecord, state: SymbolState, ordinal: int) -> str | None:
        if rec.time_us < state.max_time_us - self.tolerance_us:
            behind = (state.max_time_us - rec.time_us) / 1e6
            return (
                f"time: {behind:.3f} s before the latest {rec.symbol} trade "
                f"(tolerance {self.tolerance_us / 1e6:g} s)"
            )
        if rec.trade_id and (rec.symbol, rec.trade_id) in self.window:
            return f"trade_id: {rec.trade_id!r} of {rec.symbol} was already seen"
        side, source = classify(rec, state)
        state.last_price, state.last_side = rec.price, side
        if rec.time_us > state.max_time_us:
            state.max_time_us = rec.time_us
        if rec.trade_id:  # remembered as classified, so a cancel reverses exactly this trade
            self.window[(rec.symbol, rec.trade_id)] = (rec.price, rec.qty, side, source, rec.time_us)
            if len(self.window) > self.window_size:
                self.window.popitem(last=False)
        self._add(rec, side, source, ordinal)
        return None

    def finish(self) -> None:
        """End of input: held trades go on (nothing contradicts them), and every symbol with a
        checkpoint has its accepted lines compared with the committed ones."""
        for held in list(self.held.values()):
            self._release(held, self.states[held.rec.symbol])
        for symbol in self.skip:
            self._check(symbol)

    def _add(self, rec: TradeRecord, side: int, source: int, ordinal: int) -> None:
        self.accepted += 1
        symbol = rec.symbol
        done = self.skip.get(symbol)
        if done is not None and symbol not in self._checked:
            if ordinal <= done.ordinal:
                self.skipped += 1
                seen = self._seen.get(symbol)
                if seen is None:
                    seen = self._seen[symbol] = array("q")
                seen.append(ordinal)
                if len(seen) >= _TALLY_EVERY:  # bounded memory on long re-reads
                    self._add_up(symbol)
                return
            self._check(symbol)
        if symbol in self.changed:
            return  # starts over from its first line on the next pass
        if done is not None and ordinal <= done.ordinal:  # only after a check found it unchanged
            self.skipped += 1
            return
        self.builder.add(rec, side, source, ordinal)

    def _check(self, symbol: str) -> None:
        if symbol in self._checked:
            return
        self._checked.add(symbol)
        done = self.skip[symbol]
        self._add_up(symbol)
        count, digest = self._tally.pop(symbol, [0, 0])
        if done.count is None or done.digest is None:
            return  # a checkpoint from before counts were kept: trusted as it is
        if count == 0:
            return  # not read at all this time (--only, all rejected): its data is not thrown away
        if (count, digest) != (done.count, done.digest):
            self.changed[symbol] = Changed(symbol, done.count, count)

    def _add_up(self, symbol: str) -> None:
        seen = self._seen.pop(symbol, None)
        if seen:
            tally = self._tally.setdefault(symbol, [0, 0])
            tally[0] += len(seen)
            tally[1] += ordinal_digest(np.frombuffer(seen, dtype=np.int64))
