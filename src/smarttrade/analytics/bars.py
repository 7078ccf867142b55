"""Bars per symbol and timeframe, their footprints and indicators, built as trades are committed.

Everything here turns one commit's trades of one symbol into writes for the same commit (so bars
are exactly as durable as the trades) and keeps the forming bar and the indicator recursions as
plain state, saved in the ingest checkpoint so a restart resumes them exactly.

- Bars are clock-aligned in the instrument's time zone (its calendar, symbols.py) and never span
  two sessions: a bar starts at the later of its aligned start and its session's start. A trade
  that arrives late (within the ingest tolerance) for a bar already closed joins the forming bar.
- Indicators follow the bars of every session except off-session time and sessions marked
  ``/apart`` (B3's after-hours): those are kept apart (their own bars, no indicators). Cumulative
  delta and VWAP restart with every session and every stretch of off-session time.
- Volumes are integers in quantity units inside; bar hashes and bar footprints hold them in the
  instrument's own units (``5.234`` BTC), written from the integers (never summed as floats).
- A cancel (B3) takes its trade's volume out of the bar and the bar's footprint it was counted
  in; the bar's open/high/low/close stay as traded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from smarttrade.analytics.calendar import Calendar
from smarttrade.analytics.indicators import Atr, Bollinger, Ema, Macd, Rsi, Sma
from smarttrade.keyspace import BAR_TTL, bar_footprint_key, bar_index_key, bar_key, calc_key
from smarttrade.symbols import SymbolSpec

TIMEFRAMES = {"1m": 60, "5m": 300, "15m": 900}
BAR_INDEX_MAX = 5_000  # bars listed per symbol and timeframe
PRIMARY_TF = "1m"  # calc:SYMBOL:rsi is RSI 14 on these closes

Op = tuple[str, int, str, list[Any]]  # command, db, key, arguments
_OLD_VWAP_KEYS = 16 * 100_000  # a saved VWAP key below this is the old (day, session) encoding


@dataclass
class Indicators:
    """The per-timeframe set; names and parameters are documented in docs/keyspace.md."""

    rsi: Rsi = field(default_factory=lambda: Rsi(14))
    sma: Sma = field(default_factory=lambda: Sma(20))
    ema: Ema = field(default_factory=lambda: Ema(20))
    macd: Macd = field(default_factory=Macd)
    bb: Bollinger = field(default_factory=lambda: Bollinger(20, 2.0, 2.0))
    atr: Atr = field(default_factory=lambda: Atr(14))

    def update(self, high: float, low: float, close: float) -> dict[str, tuple[float | None, int | None]]:
        rsi = self.rsi.update(close)
        sma = self.sma.update(close)
        ema = self.ema.update(close)
        macd = self.macd.update(close)
        bb = self.bb.update(close)
        atr = self.atr.update(high, low, close)
        return self._named(rsi, sma, ema, macd, bb, atr)

    def peek(self, high: float, low: float, close: float) -> dict[str, tuple[float | None, int | None]]:
        return self._named(
            self.rsi.peek(close),
            self.sma.peek(close),
            self.ema.peek(close),
            self.macd.peek(close),
            self.bb.peek(close),
            self.atr.peek(high, low, close),
        )

    def _named(self, rsi, sma, ema, macd, bb, atr) -> dict[str, tuple[float | None, int | None]]:  # type: ignore[no-untyped-def]
        macd = macd or (None, None, None)
        bb = bb or (None, None, None)
        return {
            "rsi_14": (rsi, 14),
            "sma_20": (sma, 20),
            "ema_20": (ema, 20),
            "macd": (macd[0], None),
            "macd_signal": (macd[1], None),
            "macd_hist": (macd[2], None),
            "bb_upper": (bb[0], 20),
            "bb_middle": (bb[1], 20),
            "bb_lower": (bb[2], 20),
            "atr_14": (atr, 14),
        }

    def state(self) -> dict[str, Any]:
        return {name: getattr(self, name).state() for name in ("rsi", "sma", "ema", "macd", "bb", "atr")}

    def load(self, s: dict[str, Any]) -> None:
        for name, value in s.items():
            getattr(self, name).load(value)


@dataclass
class Bar:
    start: int  # epoch seconds
    session: str  # YYYY-MM-DD/name
    kind: str  # regular, after, off...
    open: int
    high: int
    low: int
    close: int
    volume: int = 0
    buy: int = 0
    sell: int = 0
    trades: int = 0
    cum_delta: int = 0  # the session's cumulative delta at this bar


@dataclass
class Frame:
    """One timeframe of one symbol: the forming bar, the session's cumulative delta, indicators."""

    seconds: int
    bar: Bar | None = None
    cum_delta: int = 0
    cum_session: str = ""
    indicators: Indicators = field(default_factory=Indicators)


class SymbolAnalytics:
    def __init__(
        self,
        symbol: str,
        spec: SymbolSpec,
        calendar: Calendar,
        timeframes: dict[str, int],
        dbs: tuple[int, int, int],  # bars (order flow db), bar footprints (footprint db), calc
        calc_ttl: int,
    ) -> None:
        self.symbol = symbol
        self.spec = spec
        self.calendar = calendar
        self._feeds_indicators = {s.name for s in calendar.spans if not s.apart}
        # whole contracts: plain HINCRBY on integers; else exact decimal text, incremented in Lua
        self._qty_incr = "HINCRBYEX" if spec.qty_decimals == 0 else "HINCRQTYEX"
        self.frames = {name: Frame(seconds) for name, seconds in timeframes.items()}
        self.db_bars, self.db_fp, self.db_calc = dbs
        self.calc_ttl = calc_ttl
        self.vwap_session = ""
        self.vwap_pv = 0  # sum(price level * qty units): exact integers
        self.vwap_qty = 0
        self.vwap_key = -1  # (day, session) of the VWAP, as one increasing number
        self.closed_since_save = False  # a bar closed: the indicator state must be saved

    # -- state ------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The forming bars, cumulative deltas and VWAP: small, saved with every commit."""
        return {
            "frames": {
                name: {"bar": None if f.bar is None else vars(f.bar), "cum_delta": f.cum_delta,
                       "cum_session": f.cum_session}
                for name, f in self.frames.items()
            },
            "vwap": [self.vwap_session, self.vwap_pv, self.vwap_qty, self.vwap_key],
        }  # fmt: skip

    def indicator_state(self) -> dict[str, Any]:
        """The indicator recursions: they change only when a bar closes, and are saved then."""
        self.closed_since_save = False
        return {name: f.indicators.state() for name, f in self.frames.items()}

    def load(self, s: dict[str, Any], indicators: dict[str, Any] | None = None) -> None:
        for name, fs in s["frames"].items():
            frame = self.frames.get(name)
            if frame is None:
                continue  # a timeframe no longer configured
            frame.bar = None if fs["bar"] is None else Bar(**fs["bar"])
            frame.cum_delta, frame.cum_session = fs["cum_delta"], fs["cum_session"]
        self.vwap_session, self.vwap_pv, self.vwap_qty, self.vwap_key = s["vwap"]
        if 0 <= self.vwap_key < _OLD_VWAP_KEYS:  # saved as day * 16 + session + 1 before: same session
            day, index = divmod(self.vwap_key, 16)
            spans = self.calendar.spans
            began = spans[index - 1].open_s if 0 < index <= len(spans) else 0
            self.vwap_key = day * 86_400 + began
        for name, state in (indicators or {}).items():
            if name in self.frames:
                self.frames[name].indicators.load(state)

    # -- applying a commit's trades -----------------------------------------------------------

    def apply(
        self,
        price: np.ndarray,
        qty: np.ndarray,
        side: np.ndarray,
        time_us: np.ndarray,
        cancel: np.ndarray,
    ) -> list[Op]:
        ops: list[Op] = []
        epoch_s = time_us // 1_000_000
        local, day, index, began = self.calendar.locate(epoch_s)
        offset = local - epoch_s
        self._vwap(price, qty, day, index, began, cancel, ops, int(epoch_s[-1]))
        for name, frame in self.frames.items():
            aligned = (local // frame.seconds) * frame.seconds
            starts = np.maximum(aligned, day * 86_400 + began) - offset  # back to epoch seconds
            self._frame(name, frame, price, qty, side, starts, day, index, cancel, ops)
        return ops

    def _vwap(self, price, qty, day, index, began, cancel, ops: list[Op], stamp: int) -> None:  # type: ignore[no-untyped-def]
        """Session VWAP in exact integers. A newer session starts it over; a late trade from an
        older one counts in the current session (as it does in the bars); a cancel takes its
        trade out again."""
        key = day * 86_400 + began  # where the session (or stretch of off time) began: in time order
        cuts = np.flatnonzero(np.diff(key) | np.diff(cancel.astype(np.int64))) + 1
        small = int(price.max()) * int(qty.sum()) < 2**62  # int64 products and sums stay exact
        for a, b in zip([0, *cuts.tolist()], [*cuts.tolist(), key.size], strict=True):
            k = int(key[a])
            if k > self.vwap_key:
                self.vwap_key = k
                self.vwap_session = self.calendar.session_name(int(day[a]), int(index[a]))
                self.vwap_pv = self.vwap_qty = 0
            if small:
                pv, q = int(np.dot(price[a:b], qty[a:b])), int(qty[a:b].sum())
            else:
                pv = sum(p * v for p, v in zip(price[a:b].tolist(), qty[a:b].tolist(), strict=True))
                q = sum(qty[a:b].tolist())
            if cancel[a]:
                if k != self.vwap_key:
                    continue  # a cancel of an earlier session's trade: that VWAP is gone
                pv, q = -pv, -q
            self.vwap_pv += pv
            self.vwap_qty += q
        if self.vwap_qty > 0:
            value = self.vwap_pv / self.vwap_qty / self.spec.price_scale
            ops.append(_calc(self.db_calc, self.symbol, "vwap", value, None, stamp, self.calc_ttl))

    def _frame(self, name, frame: Frame, price, qty, side, starts, day, index, cancel, ops: list[Op]) -> None:  # type: ignore[no-untyped-def]
        touched: dict[int, Bar] = {}
        created: set[int] = set()
        fp: dict[int, dict[tuple[int, int], int]] = {}  # bar start -> (level, side) -> qty
        bar = frame.bar
        if bar is not None and price.size <= 64 and not cancel.any() and int(starts.max()) <= bar.start:
            # a live commit's few trades, all in the forming bar: plain Python beats numpy here
            prices, qtys, sides = price.tolist(), qty.tolist(), side.tolist()
            bar.high = max(bar.high, *prices)
            bar.low = min(bar.low, *prices)
            bar.close = prices[-1]
            buy = sum(q for q, sd in zip(qtys, sides, strict=True) if sd > 0)
            sell = sum(qtys) - buy
            self._add_volume(frame, bar, buy, sell, len(prices))
            touched[bar.start] = bar
            _add_levels(fp.setdefault(bar.start, {}), price, qty, side, 1)
            live = np.zeros(0, dtype=np.int64)
        else:
            live = np.flatnonzero(~cancel)
        if live.size:
            s = np.maximum.accumulate(starts[live])  # late trades join the forming bar
            if frame.bar is not None:
                s = np.maximum(s, frame.bar.start)
            cuts = np.flatnonzero(np.diff(s)) + 1
            for a, b in zip([0, *cuts.tolist()], [*cuts.tolist(), s.size], strict=True):
                rows = live[a:b]
                start = int(s[a])
                bar = frame.bar
                if bar is None or bar.start != start:
                    if bar is not None:
                        self._close(name, frame, bar, ops)
                    first = int(rows[0])
                    session = self.calendar.session_name(int(day[first]), int(index[first]))
                    kind = self.calendar.kind(int(index[first]))
                    if session != frame.cum_session:
                        frame.cum_delta, frame.cum_session = 0, session
                    p0 = int(price[first])
                    bar = frame.bar = Bar(start, session, kind, p0, p0, p0, p0, cum_delta=frame.cum_delta)
                    created.add(start)
                p, q, sd = price[rows], qty[rows], side[rows]
                bar.high = max(bar.high, int(p.max()))
                bar.low = min(bar.low, int(p.min()))
                bar.close = int(p[-1])
                self._add_volume(frame, bar, int(q[sd > 0].sum()), int(q[sd < 0].sum()), int(rows.size))
                touched[bar.start] = bar
                _add_levels(fp.setdefault(bar.start, {}), p, q, sd, 1)
        late: list[Op] = []  # cancels of closed bars: after the bars' own writes below
        for i in np.flatnonzero(cancel).tolist():  # back out of the bar it was counted in
            start = int(starts[i])
            q, sd = int(qty[i]), int(side[i])
            bar = frame.bar
            if bar is not None and bar.start <= start:
                start = bar.start
                bar.volume -= q
                bar.buy -= q if sd > 0 else 0
                bar.sell -= q if sd < 0 else 0
                frame.cum_delta -= q if sd > 0 else -q
                bar.cum_delta = frame.cum_delta
                touched[start] = bar
            else:
                key = bar_key(self.symbol, name, start)
                delta = -q if sd > 0 else q
                changes = ["volume", -q, "buy" if sd > 0 else "sell", -q, "delta", delta]
                late.append((self._qty_incr, self.db_bars, key, self._incr_args(changes)))
            _add_levels(fp.setdefault(start, {}), price[i : i + 1], qty[i : i + 1], side[i : i + 1], -1)
        for start, bar in touched.items():
            # the TTL with every write: a key evicted or expired meanwhile must not come back forever
            ops.append(
                ("HSETEX", self.db_bars, bar_key(self.symbol, name, start), [BAR_TTL, *self._fields(bar)])
            )
            if start in created:  # once per bar: its place in the list
                index_key = bar_index_key(self.symbol, name)
                ops.append(("ZADD", self.db_bars, index_key, [start, start]))
                ops.append(("ZREMRANGEBYRANK", self.db_bars, index_key, [0, -(BAR_INDEX_MAX + 1)]))
                ops.append(("EXPIRE", self.db_bars, index_key, [BAR_TTL]))
        ops += late
        for start, levels in fp.items():
            key = bar_footprint_key(self.symbol, name, start)
            pairs: list[Any] = []
            for (level, sd), q in levels.items():
                if q:
                    pairs += [f"{'b' if sd > 0 else 's'}:{level}", q]
            if pairs:
                ops.append((self._qty_incr, self.db_fp, key, self._incr_args(pairs)))

    @staticmethod
    def _add_volume(frame: Frame, bar: Bar, buy: int, sell: int, trades: int) -> None:
        bar.volume += buy + sell
        bar.buy += buy
        bar.sell += sell
        bar.trades += trades
        frame.cum_delta += buy - sell
        bar.cum_delta = frame.cum_delta

    def _incr_args(self, pairs: list[Any]) -> list[Any]:
        """HINCRQTYEX takes the quantity decimals after the TTL (redis/scripts.py)."""
        if self.spec.qty_decimals == 0:
            return [BAR_TTL, *pairs]
        return [BAR_TTL, self.spec.qty_decimals, *pairs]

    def _fields(self, bar: Bar) -> list[Any]:
        text, q = self.spec.price_text, self.spec.qty_text
        return [
            "start", bar.start, "session", bar.session, "open", text(bar.open), "high", text(bar.high),
            "low", text(bar.low), "close", text(bar.close), "volume", q(bar.volume), "buy", q(bar.buy),
            "sell", q(bar.sell), "delta", q(bar.buy - bar.sell), "trades", bar.trades,
            "cum_delta", q(bar.cum_delta),
        ]  # fmt: skip

    def _close(self, name: str, frame: Frame, bar: Bar, ops: list[Op]) -> None:
        """A bar is done: feed the indicators (unless off or apart) and write their values."""
        key = bar_key(self.symbol, name, bar.start)
        if bar.kind not in self._feeds_indicators:
            ops.append(("HSET", self.db_bars, key, ["closed", 1]))
            return
        scale = self.spec.price_scale
        values = frame.indicators.update(bar.high / scale, bar.low / scale, bar.close / scale)
        self.closed_since_save = True
        stamp = bar.start + frame.seconds
        fields: list[Any] = []
        for indicator, (value, period) in values.items():
            if value is None:
                continue
            fields += [indicator, repr(value)]
            ops.append(
                _calc(self.db_calc, self.symbol, f"{indicator}_{name}", value, period, stamp, self.calc_ttl)
            )
            if indicator == "rsi_14" and name == PRIMARY_TF:
                ops.append(_calc(self.db_calc, self.symbol, "rsi", value, 14, stamp, self.calc_ttl))
        ops.append(("HSET", self.db_bars, key, ["closed", 1, *fields]))

    def peek(self, name: str) -> dict[str, tuple[float | None, int | None]]:
        """Indicator values as if the forming bar closed now."""
        frame = self.frames[name]
        bar = frame.bar
        if bar is None or bar.kind not in self._feeds_indicators:
            return {}
        scale = self.spec.price_scale
        return frame.indicators.peek(bar.high / scale, bar.low / scale, bar.close / scale)


def _add_levels(out: dict[tuple[int, int], int], price, qty, side, sign: int) -> None:  # type: ignore[no-untyped-def]
    """Add signed volume per (level, side) into ``out``: numpy for many trades, plain Python for
    the few of a live commit (numpy's fixed cost dominates there)."""
    if price.size <= 64:
        for p, q, s in zip(price.tolist(), qty.tolist(), side.tolist(), strict=True):
            key = (p, 1 if s > 0 else -1)
            out[key] = out.get(key, 0) + sign * q
        return
    combined = price * 2 + (side > 0)  # level and side in one integer
    keys, inverse = np.unique(combined, return_inverse=True)
    sums = np.zeros(keys.size, dtype=np.int64)  # integer sums: float weights round past 2**53
    np.add.at(sums, inverse, qty)
    for k, q in zip(keys.tolist(), sums.tolist(), strict=True):
        key = (k >> 1, 1 if k & 1 else -1)
        out[key] = out.get(key, 0) + sign * q


def _calc(db: int, symbol: str, name: str, value: float, period: int | None, stamp: int, ttl: int) -> Op:
    period_text = "null" if period is None else str(period)
    body = f'{{"indicator":"{name}","value":{value!r},"timestamp":{stamp},"period":{period_text}}}'
    return ("SET", db, calc_key(symbol, name), [body, "EX", ttl])
