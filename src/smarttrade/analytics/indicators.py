"""Incremental indicators, equal to TA-Lib's: O(1) per closed bar, with a peek for the forming bar.

Each one repeats TA-Lib's arithmetic in TA-Lib's order (running sums added and subtracted the way
ta_SMA.c, ta_EMA.c, ta_RSI.c, ta_MACD.c and ta_ATR.c do), so results match to the last bits, not
just approximately. State is plain data (``state()``/``load()``), saved
with the bars so a restarted ingester resumes the exact recursion.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


def _is_zero(v: float) -> bool:  # TA_IS_ZERO
    return -0.00000000000001 < v < 0.00000000000001


def _is_zero_or_neg(v: float) -> bool:  # TA_IS_ZERO_OR_NEG
    return v < 0.00000000000001


@dataclass
class Sma:
    period: int
    total: float = 0.0
    window: deque[float] = field(default_factory=deque)
    value: float | None = None

    def update(self, x: float) -> float | None:
        self.total += x
        self.window.append(x)
        if len(self.window) < self.period:
            return None
        self.value = self.total / self.period
        self.total -= self.window.popleft()
        return self.value

    def peek(self, x: float) -> float | None:
        if len(self.window) + 1 < self.period:
            return None
        return (self.total + x) / self.period

    def state(self) -> dict[str, Any]:
        return {"total": self.total, "window": list(self.window), "value": self.value}

    def load(self, s: dict[str, Any]) -> None:
        self.total, self.window, self.value = s["total"], deque(s["window"]), s["value"]


@dataclass
class Ema:
    """Seeded with the SMA of the first ``period`` values (TA-Lib's default)."""

    period: int
    seed: list[float] = field(default_factory=list)
    value: float | None = None

    @property
    def k(self) -> float:
        return 2.0 / (self.period + 1)

    def update(self, x: float) -> float | None:
        if self.value is None:
            self.seed.append(x)
            if len(self.seed) < self.period:
                return None
            total = 0.0
            for v in self.seed:
                total += v
            self.value = total / self.period
            self.seed = []
            return self.value
        self.value = ((x - self.value) * self.k) + self.value
        return self.value

    def peek(self, x: float) -> float | None:
        if self.value is None:
            if len(self.seed) + 1 < self.period:
                return None
            total = 0.0
            for v in [*self.seed, x]:
                total += v
            return total / self.period
        return ((x - self.value) * self.k) + self.value

    def state(self) -> dict[str, Any]:
        return {"seed": self.seed, "value": self.value}

    def load(self, s: dict[str, Any]) -> None:
        self.seed, self.value = list(s["seed"]), s["value"]


@dataclass
class Rsi:
    """Wilder's RSI; 0 when there is neither gain nor loss (a flat series), as in TA-Lib."""

    period: int
    prev: float | None = None
    count: int = 0  # differences seen
    gain: float = 0.0
    loss: float = 0.0
    value: float | None = None

    def _step(self, x: float) -> tuple[float, float, int, float | None]:
        assert self.prev is not None
        diff = x - self.prev
        gain, loss, count = self.gain, self.loss, self.count + 1
        if count <= self.period:  # the first average: a plain sum, then divided
            if diff < 0:
                loss -= diff
            else:
                gain += diff
            if count < self.period:
                return gain, loss, count, None
            loss /= self.period
            gain /= self.period
        else:
            loss *= self.period - 1
            gain *= self.period - 1
            if diff < 0:
                loss -= diff
            else:
                gain += diff
            loss /= self.period
            gain /= self.period
        total = gain + loss
        return gain, loss, count, (100.0 * (gain / total) if not _is_zero(total) else 0.0)

    def update(self, x: float) -> float | None:
        if self.prev is None:
            self.prev = x
            return None
        self.gain, self.loss, self.count, value = self._step(x)
        self.prev = x
        if value is not None:
            self.value = value
        return value

    def peek(self, x: float) -> float | None:
        return None if self.prev is None else self._step(x)[3]

    def state(self) -> dict[str, Any]:
        return {
            "prev": self.prev,
            "count": self.count,
            "gain": self.gain,
            "loss": self.loss,
            "value": self.value,
        }

    def load(self, s: dict[str, Any]) -> None:
        self.prev, self.count, self.gain, self.loss, self.value = (
            s["prev"],
            s["count"],
            s["gain"],
            s["loss"],
            s["value"],
        )


@dataclass
class Macd:
    """MACD with TA-Lib's seeding: both EMAs start on the slow one's first bar, the fast one
    seeded with the SMA of the ``fast`` values before it (not EMA(fast) - EMA(slow) from bar 0)."""

    fast: int = 12
    slow: int = 26
    signal: int = 9
    closes: list[float] = field(default_factory=list)  # until the slow EMA can start
    fast_ema: Ema | None = None
    slow_ema: Ema | None = None
    signal_ema: Ema = field(init=False)
    value: tuple[float, float, float] | None = None  # macd, signal, histogram

    def __post_init__(self) -> None:
        self.signal_ema = Ema(self.signal)

    def _start(self, closes: list[float]) -> tuple[Ema, Ema]:
        slow, fast = Ema(self.slow), Ema(self.fast)
        for x in closes:
            slow.update(x)
        for x in closes[-self.fast :]:
            fast.update(x)
        return fast, slow

    def update(self, x: float) -> tuple[float, float, float] | None:
        if self.slow_ema is None:
            self.closes.append(x)
            if len(self.closes) < self.slow:
                return None
            self.fast_ema, self.slow_ema = self._start(self.closes)
            self.closes = []
        else:
            assert self.fast_ema is not None
            self.fast_ema.update(x)
            self.slow_ema.update(x)
        assert self.fast_ema is not None and self.fast_ema.value is not None
        assert self.slow_ema.value is not None
        macd = self.fast_ema.value - self.slow_ema.value
        signal = self.signal_ema.update(macd)
        if signal is None:
            return None
        self.value = (macd, signal, macd - signal)
        return self.value

    def peek(self, x: float) -> tuple[float, float, float] | None:
        if self.slow_ema is None:
            if len(self.closes) + 1 < self.slow:
                return None
            fast, slow = self._start([*self.closes, x])
            f, s = fast.value, slow.value
        else:
            assert self.fast_ema is not None
            f, s = self.fast_ema.peek(x), self.slow_ema.peek(x)
        assert f is not None and s is not None
        macd = f - s
        signal = self.signal_ema.peek(macd)
        return None if signal is None else (macd, signal, macd - signal)

    def state(self) -> dict[str, Any]:
        return {
            "closes": self.closes,
            "fast": None if self.fast_ema is None else self.fast_ema.state(),
            "slow": None if self.slow_ema is None else self.slow_ema.state(),
            "signal": self.signal_ema.state(),
            "value": self.value,
        }

    def load(self, s: dict[str, Any]) -> None:
        self.closes = list(s["closes"])
        self.fast_ema = self.slow_ema = None
        if s["fast"] is not None:
            self.fast_ema, self.slow_ema = Ema(self.fast), Ema(self.slow)
            self.fast_ema.load(s["fast"])
            self.slow_ema.load(s["slow"])
        self.signal_ema.load(s["signal"])
        self.value = None if s["value"] is None else tuple(s["value"])  # type: ignore[assignment]


@dataclass
class Bollinger:
    """Bollinger bands: an SMA middle and the population standard deviation of the window, as
    TA-Lib's BBANDS with MA type SMA (the period is always given explicitly).

    The deviation is computed in two passes over the window (O(period) per bar, never over the
    history): TA-Lib 0.6 and later do so too, and the one-pass sum-of-squares formula differs from
    them by up to 1e-6 on index futures prices, where the squares are large.
    """

    period: int = 20
    dev_up: float = 2.0
    dev_down: float = 2.0
    sma: Sma = field(init=False)
    window: deque[float] = field(default_factory=deque)
    value: tuple[float, float, float] | None = None  # upper, middle, lower

    def __post_init__(self) -> None:
        self.sma = Sma(self.period)

    def _bands(self, middle: float, window: Iterable[float]) -> tuple[float, float, float]:
        acc = 0.0
        for x in window:
            d = x - middle
            acc += d * d
        var = acc / self.period
        std = math.sqrt(var) if not _is_zero_or_neg(var) else 0.0
        if self.dev_up == self.dev_down:
            if self.dev_up != 1.0:
                std *= self.dev_up
            return (middle + std, middle, middle - std)
        return (middle + std * self.dev_up, middle, middle - std * self.dev_down)

    def update(self, x: float) -> tuple[float, float, float] | None:
        self.window.append(x)
        if len(self.window) > self.period:
            self.window.popleft()
        middle = self.sma.update(x)
        if middle is None:
            return None
        self.value = self._bands(middle, self.window)
        return self.value

    def peek(self, x: float) -> tuple[float, float, float] | None:
        middle = self.sma.peek(x)
        if middle is None:
            return None
        window = list(self.window)[-(self.period - 1) :] if self.period > 1 else []
        return self._bands(middle, [*window, x])

    def state(self) -> dict[str, Any]:
        return {"sma": self.sma.state(), "window": list(self.window), "value": self.value}

    def load(self, s: dict[str, Any]) -> None:
        self.sma.load(s["sma"])
        self.window = deque(s["window"])
        self.value = None if s["value"] is None else tuple(s["value"])  # type: ignore[assignment]


@dataclass
class Atr:
    """Wilder's average true range: the SMA of the first ``period`` true ranges, then smoothed."""

    period: int = 14
    prev_close: float | None = None
    ranges: list[float] = field(default_factory=list)
    value: float | None = None

    @staticmethod
    def true_range(high: float, low: float, prev_close: float) -> float:
        greatest = high - low
        v2 = abs(prev_close - high)
        if v2 > greatest:
            greatest = v2
        v3 = abs(prev_close - low)
        if v3 > greatest:
            greatest = v3
        return greatest

    def _step(self, high: float, low: float, close: float) -> tuple[list[float], float | None]:
        assert self.prev_close is not None
        tr = self.true_range(high, low, self.prev_close)
        if self.value is None:
            ranges = [*self.ranges, tr]
            if len(ranges) < self.period:
                return ranges, None
            total = 0.0
            for r in ranges:
                total += r
            return [], total / self.period
        value = self.value * (self.period - 1)
        value += tr
        return [], value / self.period

    def update(self, high: float, low: float, close: float) -> float | None:
        if self.prev_close is None:
            self.prev_close = close
            return None
        self.ranges, value = self._step(high, low, close)
        self.prev_close = close
        if value is not None:
            self.value = value
        return value

    def peek(self, high: float, low: float, close: float) -> float | None:
        return None if self.prev_close is None else self._step(high, low, close)[1]

    def state(self) -> dict[str, Any]:
        return {"prev_close": self.prev_close, "ranges": self.ranges, "value": self.value}

    def load(self, s: dict[str, Any]) -> None:
        self.prev_close, self.ranges, self.value = s["prev_close"], list(s["ranges"]), s["value"]
