"""A synthetic B3 feed: real contract specs, session hours, bursts and quiet spells.

Deterministic for a given seed: the same seed, symbols and start give the same trades, which is
what lets a restarted replay skip exactly what was already committed. Generation is columnar
(numpy), so a multi-million-trade replay spends its time in the engine, not here.
"""

from __future__ import annotations

import hashlib
import time as wallclock
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np

from smarttrade.feeds.b3 import B3_TZ
from smarttrade.feeds.chunk import SIDE_SOURCE, Chunk
from smarttrade.symbols import front_month, root_of, spec_for

START_PRICES: dict[str, Decimal] = {
    "DOL": Decimal("5234.5"),
    "WDO": Decimal("5235.0"),
    "WIN": Decimal("125000"),
    "IND": Decimal("125010"),
}
# Regimes of activity: (rate multiplier, mean length in trades).
REGIMES = ((0.15, 400), (1.0, 1500), (6.0, 600))  # quiet, normal, burst
SEGMENT = 128  # trades per regime draw
LIVE_PART = 16_384  # most trades in one live chunk: a step beyond it is yielded in parts
MAX_EXPECTED = 1e12  # trades per live step, at most (numpy's Poisson has a ceiling)


@dataclass(frozen=True, slots=True)
class SessionHours:
    open: time
    close: time
    tz: ZoneInfo = B3_TZ

    @classmethod
    def parse(cls, text: str, tz: ZoneInfo = B3_TZ) -> SessionHours:
        """``09:00-18:25``."""
        try:
            a, b = text.split("-")
            opening, closing = time.fromisoformat(a.strip()), time.fromisoformat(b.strip())
        except ValueError:
            raise ValueError(f"session hours {text!r} are not HH:MM-HH:MM") from None
        if closing <= opening:
            raise ValueError(f"session hours {text!r}: the close must come after the open")
        return cls(opening, closing, tz)

    @property
    def length_s(self) -> int:
        return (self.close.hour * 3600 + self.close.minute * 60) - (
            self.open.hour * 3600 + self.open.minute * 60
        )

    def opens_from(self, day: date) -> Iterator[int]:
        """Unix seconds of each weekday session open from ``day`` on."""
        while True:
            if day.weekday() < 5:
                yield int(datetime.combine(day, self.open, self.tz).timestamp())
            day += timedelta(days=1)


B3_SESSION = SessionHours(time(9, 0), time(18, 25))


def synthetic_symbols(roots: list[str], day: date, tickers: bool) -> list[str]:
    """Roots as given, or their front-month tickers on ``day`` (WIN -> WINZ25)."""
    return [front_month(root_of(r), day) if tickers and r == root_of(r) else r for r in roots]


class SyntheticFeed:
    """Replay mode: data time starts at a session open and runs ``count`` trades.

    ``rate`` is the mean trades/s per symbol in the normal regime.
    """

    def __init__(
        self,
        symbols: list[str],
        seed: int = 1,
        count: int | None = None,
        rate: float = 20.0,
        start_day: date | None = None,
        session: SessionHours | None = B3_SESSION,
        chunk: int = 16_384,
        origin_s: float | None = None,
    ) -> None:
        self.symbols = symbols
        self.specs = [spec_for(s) for s in symbols]
        self.seed = seed
        self.count = count
        self.rate = rate
        self.session = session
        self.chunk = chunk
        self.start_day = start_day or date.today()
        self.origin_s = origin_s  # with no session: data time starts here, not at midnight
        # where each symbol's prices start (default START_PRICES): a sequel goes on from its past.
        # Only ever set from outside, so every pass over ``chunks()`` yields the same trades.
        self.start_levels: dict[str, int] = {}

    @property
    def name(self) -> str:
        """Every parameter that shapes the trades is in the name: resuming with other ones is
        another source, never a mix of two."""
        session = "always" if self.session is None else f"{self.session.open}-{self.session.close}"
        params = f"{self.count}|{self.rate}|{session}|{self.chunk}"
        if self.origin_s is not None:
            params += f"|{self.origin_s}"
        digest = hashlib.sha1(params.encode()).hexdigest()[:8]
        return f"synthetic-{'-'.join(self.symbols)}-s{self.seed}-{self.start_day.isoformat()}-{digest}"

    def _opens(self) -> Iterator[int]:
        """Unix microseconds of each session open (continuous days when there is no session)."""
        if self.session is not None:
            for seconds in self.session.opens_from(self.start_day):
                yield seconds * 10**6
        base = int(datetime.combine(self.start_day, time(0), B3_TZ).timestamp()) * 10**6
        if self.origin_s is not None:
            base = int(self.origin_s * 1000) * 1000
        for day in range(1 << 30):
            yield base + day * 86_400 * 10**6

    def chunks(self) -> Iterator[Chunk]:
        rng = np.random.default_rng(self.seed)
        n_sym = len(self.symbols)
        ticks = np.array([s.tick_units for s in self.specs], dtype=np.int64)
        last = np.array(
            [
                self.start_levels.get(sym) or s.level(START_PRICES.get(s.root, Decimal(100)))
                for sym, s in zip(self.symbols, self.specs, strict=True)
            ],
            dtype=np.int64,
        )
        session_us = (self.session.length_s if self.session else 86_400) * 10**6
        opens_iter = self._opens()
        opens: list[int] = []

        def open_us(k: int) -> int:
            while len(opens) <= k:
                opens.append(next(opens_iter))
            return opens[k]

        session, elapsed_us = 0, 0.0  # current session and data time into it
        regime, done = 1, 0
        while self.count is None or done < self.count:
            n = self.chunk if self.count is None else min(self.chunk, self.count - done)
            # activity: one regime draw per segment (quiet spells, normal trading, bursts)
            mult = np.empty(-(-n // SEGMENT))
            for i in range(len(mult)):
                if rng.random() < SEGMENT / REGIMES[regime][1]:
                    regime = int(rng.integers(0, len(REGIMES)))
                mult[i] = REGIMES[regime][0]
            rate = np.repeat(mult, SEGMENT)[:n] * self.rate * n_sym
            offsets = elapsed_us + np.cumsum(rng.exponential(1.0, n) / rate * 1e6)
            # past the close, trading carries on at the next session's open
            which = (offsets // session_us).astype(np.int64)
            inside = offsets - which * session_us
            base = np.array([open_us(session + k) for k in range(int(which[-1]) + 1)], dtype=np.int64)
            times = base[which] + (inside // 1000).astype(np.int64) * 1000  # B3 stamps in ms
            session += int(which[-1])
            elapsed_us = float(inside[-1])

            code = rng.integers(0, n_sym, n).astype(np.int16)
            side = np.where(rng.random(n) < 0.5, 1, -1).astype(np.int8)
            # aggressive buyers lift the offer, sellers hit the bid: moves follow the side
            moves = (rng.random(n) < 0.3) * side.astype(np.int64)
            price = np.empty(n, dtype=np.int64)
            for k in range(n_sym):
                mask = code == k
                path = np.maximum(last[k] + np.cumsum(moves[mask] * ticks[k]), ticks[k] * 10)
                price[mask] = path
                if path.size:
                    last[k] = path[-1]
            qty = rng.geometric(0.35, n).astype(np.int64)
            qty[rng.random(n) < 0.02] *= 10  # the occasional block
            tick_of = ticks[code]
            yield Chunk(
                symbols=self.symbols,
                code=code,
                price=price,
                qty=qty,
                side=side,
                side_src=np.full(n, SIDE_SOURCE, dtype=np.int8),
                time_us=times,
                bid=np.where(side > 0, price - tick_of, price),
                ask=np.where(side > 0, price, price + tick_of),
                cancel=np.zeros(n, dtype=bool),
                ordinal=np.arange(done + 1, done + n + 1, dtype=np.int64),
                end_ordinal=done + n,
            )
            done += n


@dataclass(frozen=True, slots=True)
class Backfill:
    """A past to replay before going live: trades stamped from ``start_s`` up to ``end_s`` (Unix
    seconds), ``rate`` per second per symbol, with no wall-clock pacing (full speed)."""

    start_s: float
    end_s: float
    rate: float


class LiveSyntheticFeed(SyntheticFeed):
    """Live mode: trades stamped with the wall clock, about ``rate`` per second per symbol.

    Each live chunk carries ``meta["not_before"]``, the wall time the engine releases it at. With
    a ``backfill``, its history comes first (same ordinals, prices carried on into the live part),
    so one engine builds bars and indicators over both.
    """

    def __init__(
        self,
        symbols: list[str],
        seed: int = 1,
        rate: float = 20.0,
        step_s: float = 0.05,
        backfill: Backfill | None = None,
    ) -> None:
        for value in (rate, *((backfill.rate,) if backfill else ())):
            if not (0 < value < float("inf")):
                raise ValueError(f"rate {value!r}: must be a positive number of trades/s")
        super().__init__(symbols, seed=seed, count=None, rate=rate, session=None, chunk=1024)
        self.step_s = step_s
        self.backfill = backfill
        self.backfilled = 0  # history trades handed out so far

    @property
    def name(self) -> str:
        return f"live-synthetic-{'-'.join(self.symbols)}"

    def _history(self) -> Iterator[Chunk]:
        """The backfill's trades, cut at its end; the live part starts from its last prices."""
        bf = self.backfill
        if bf is None or bf.end_s <= bf.start_s:
            return
        past = SyntheticFeed(self.symbols, self.seed + 2, None, bf.rate, session=None, origin_s=bf.start_s)
        end_us = int(bf.end_s * 1e6)
        for chunk in past.chunks():
            n = int(np.searchsorted(chunk.time_us, end_us))  # times never decrease
            part = chunk if n == len(chunk) else _take(chunk, 0, n, int(chunk.ordinal[0]) - 1)
            for k, symbol in enumerate(self.symbols):  # the live part goes on from these prices
                prices = part.price[part.code == k]
                if prices.size:
                    self.start_levels[symbol] = int(prices[-1])
            self.backfilled += len(part)
            if len(part):
                yield part
            if n < len(chunk):
                return

    def chunks(self) -> Iterator[Chunk]:
        self.backfilled, self.start_levels = 0, {}
        yield from self._history()
        rng = np.random.default_rng(self.seed + 1)
        source = super().chunks()
        buffer = next(source)
        pos, ordinal = 0, self.backfilled
        release = wallclock.time()
        expected = min(self.rate * len(self.symbols) * self.step_s, MAX_EXPECTED)
        while True:
            release += self.step_s
            due = int(rng.poisson(expected))
            while True:  # a step's trades, in parts of at most LIVE_PART (bounded memory)
                n = min(due, LIVE_PART)
                # a fast step can need several source chunks, not just one more
                while pos + n > len(buffer):
                    buffer, pos = _concat(buffer, pos, next(source)), 0
                part = _take(buffer, pos, pos + n, ordinal)
                pos += n
                ordinal += n
                due -= n
                part.time_us[:] = int(release * 1000) * 1000
                part.meta["not_before"] = release
                yield part
                if due <= 0:
                    break


def _take(c: Chunk, a: int, b: int, ordinal: int) -> Chunk:
    return Chunk(
        c.symbols,
        c.code[a:b],
        c.price[a:b],
        c.qty[a:b],
        c.side[a:b],
        c.side_src[a:b],
        c.time_us[a:b].copy(),
        c.bid[a:b],
        c.ask[a:b],
        c.cancel[a:b],
        np.arange(ordinal + 1, ordinal + b - a + 1, dtype=np.int64),
        end_ordinal=ordinal + b - a,
    )


def _concat(rest: Chunk, pos: int, more: Chunk) -> Chunk:
    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(rest, name)[pos:], getattr(more, name)])

    names = ("code", "price", "qty", "side", "side_src", "time_us", "bid", "ask", "cancel", "ordinal")
    return Chunk(rest.symbols, *(cat(n) for n in names))
