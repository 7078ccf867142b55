"""Columnar batches of normalized trades: what the engine commits.

File sources become chunks after normalization (ingest/normalize.py); the synthetic generator
produces chunks directly, so the replay hot path never builds a Python object per trade.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from smarttrade.feeds.record import TradeRecord

# Where a trade's side came from.
SIDE_SOURCE, SIDE_QUOTE, SIDE_TICK, SIDE_DEFAULT = 0, 1, 2, 3
SIDE_SOURCE_LETTERS = "sqtd"


@dataclass(slots=True)
class Chunk:
    symbols: list[str]  # the table that ``code`` indexes
    code: np.ndarray  # int16
    price: np.ndarray  # int64 level units
    qty: np.ndarray  # int64 quantity units
    side: np.ndarray  # int8, 1 buy / -1 sell
    side_src: np.ndarray  # int8, SIDE_*
    time_us: np.ndarray  # int64
    bid: np.ndarray  # int64, 0 unknown
    ask: np.ndarray  # int64, 0 unknown
    cancel: np.ndarray  # bool
    ordinal: np.ndarray  # int64, the record's position in its source
    trade_id: list[str] | None = None  # None: the ordinal is the id
    end_ordinal: int = 0  # the last source position this chunk covers (rejects included)
    meta: dict[str, object] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.code)

    def ids(self, index: np.ndarray | slice) -> list[str]:
        if self.trade_id is None:
            return [str(x) for x in self.ordinal[index].tolist()]
        if isinstance(index, slice):
            return self.trade_id[index]
        return [self.trade_id[i] for i in index.tolist()]


class ChunkBuilder:
    """Collects normalized records into columns; ``take()`` hands them over as a Chunk."""

    def __init__(self) -> None:
        self.symbols: list[str] = []
        self._codes: dict[str, int] = {}
        self._reset()

    def _reset(self) -> None:
        self.code: list[int] = []
        self.price: list[int] = []
        self.qty: list[int] = []
        self.side: list[int] = []
        self.side_src: list[int] = []
        self.time_us: list[int] = []
        self.bid: list[int] = []
        self.ask: list[int] = []
        self.cancel: list[bool] = []
        self.ordinal: list[int] = []
        self.trade_id: list[str] = []

    def __len__(self) -> int:
        return len(self.code)

    def add(self, rec: TradeRecord, side: int, side_src: int, ordinal: int) -> None:
        code = self._codes.get(rec.symbol)
        if code is None:
            code = self._codes[rec.symbol] = len(self.symbols)
            self.symbols.append(rec.symbol)
        self.code.append(code)
        self.price.append(rec.price)
        self.qty.append(rec.qty)
        self.side.append(side)
        self.side_src.append(side_src)
        self.time_us.append(rec.time_us)
        self.bid.append(rec.bid)
        self.ask.append(rec.ask)
        self.cancel.append(rec.cancel)
        self.ordinal.append(ordinal)
        self.trade_id.append(rec.trade_id)

    def take(self, end_ordinal: int) -> Chunk:
        chunk = Chunk(
            symbols=list(self.symbols),
            code=np.array(self.code, dtype=np.int16),
            price=np.array(self.price, dtype=np.int64),
            qty=np.array(self.qty, dtype=np.int64),
            side=np.array(self.side, dtype=np.int8),
            side_src=np.array(self.side_src, dtype=np.int8),
            time_us=np.array(self.time_us, dtype=np.int64),
            bid=np.array(self.bid, dtype=np.int64),
            ask=np.array(self.ask, dtype=np.int64),
            cancel=np.array(self.cancel, dtype=bool),
            ordinal=np.array(self.ordinal, dtype=np.int64),
            trade_id=self.trade_id,
            end_ordinal=end_ordinal,
        )
        self._reset()
        return chunk
