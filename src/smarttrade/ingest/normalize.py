"""From parsed lines to committed-ready trades: order checks, side classification, cancels.

Normalization is deterministic in the input order, so a resumed run that re-reads the input from
the start rebuilds exactly the state (last prices, sides, cancel window) an uninterrupted run has.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

from smarttrade.feeds.chunk import SIDE_DEFAULT, SIDE_QUOTE, SIDE_SOURCE, SIDE_TICK, ChunkBuilder
from smarttrade.feeds.files import Parsed
from smarttrade.feeds.record import BUY, SELL, UNKNOWN, TradeRecord
from smarttrade.ingest.deadletter import DeadLetters

DEFAULT_TOLERANCE_S = 5.0
CANCEL_WINDOW = 200_000  # trades remembered per source for B3 cancels
FUTURE_LIMIT_S = 86_400  # a trade stamped further ahead than this is rejected


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


class Normalizer:
    def __init__(
        self,
        dead: DeadLetters,
        skip: dict[str, int],
        tolerance_s: float = DEFAULT_TOLERANCE_S,
        window: int = CANCEL_WINDOW,
    ) -> None:
        self.dead = dead
        self.skip = skip  # per symbol: ordinals up to this one are committed already
        self.tolerance_us = int(tolerance_s * 1e6)
        self.window_size = window
        self.states: dict[str, SymbolState] = {}
        # (symbol, trade id) -> (price, qty, side, side source, time) of recent trades
        self.window: OrderedDict[tuple[str, str], tuple[int, int, int, int, int]] = OrderedDict()
        self.builder = ChunkBuilder()
        self.skipped = 0  # records already committed by an earlier run
        self.horizon_us = int((time.time() + FUTURE_LIMIT_S) * 1e6)

    def feed(self, item: Parsed) -> None:
        """One parsed line: accepted into the builder, or dead-lettered with its reason."""
        if item.error is not None:
            self.dead.reject(item.line, item.error)
            return
        assert item.record is not None
        error = self.accept(item.record, item.line.ordinal)
        if error is not None:
            self.dead.reject(item.line, error)

    def accept(self, rec: TradeRecord, ordinal: int) -> str | None:
        """Check, classify and queue one trade; the reason when it is rejected."""
        state = self.states.get(rec.symbol)
        if state is None:
            state = self.states[rec.symbol] = SymbolState()
        if rec.cancel:
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
        if rec.time_us > self.horizon_us:
            # never let one mistyped date hold back every later trade of the symbol
            return f"time: {(rec.time_us - time.time() * 1e6) / 86_400e6:.1f} days in the future"
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

    def _add(self, rec: TradeRecord, side: int, source: int, ordinal: int) -> None:
        if ordinal <= self.skip.get(rec.symbol, 0):
            self.skipped += 1
            return
        self.builder.add(rec, side, source, ordinal)
