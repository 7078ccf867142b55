"""Footprint metrics of one bar: delta, POC, value area, diagonal imbalances, stacked zones,
unfinished auctions. Inputs are integer volumes per level (levels in the symbol's price scale,
one tick apart); the ladder is made dense between the bar's low and high, empty levels included.

Definitions (docs/analytics.md):
- POC: the level with the most volume; on a tie the one nearest the bar's middle; equally near,
  the lower one.
- Value area (Dalton): from the POC, compare the two levels above with the two below and add the
  pair with more volume (both pairs on a tie; a side with fewer than two levels left offers what
  it has), until the area holds ``value_area`` (70%) of the bar's volume.
- Diagonal imbalance: buy at p when buy[p] >= R * sell[p - 1 tick]; sell at p when
  sell[p] >= R * buy[p + 1 tick]; the dominant side must be at least ``min_volume``. When the
  opposite side is zero (including beyond the bar's high or low) the level is an imbalance as soon
  as the dominant side reaches ``min_volume``.
- Stacked imbalance: ``stacked`` (3) or more adjacent levels with an imbalance on the same side.
- Unfinished auction: both buyers and sellers traded at the bar's high (or low).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, slots=True)
class FootprintParams:
    ratio: float = 3.0
    min_volume: int = 5
    stacked: int = 3
    value_area: float = 0.70


@dataclass(slots=True)
class BarFootprint:
    levels: np.ndarray  # int64 level per row, ascending, one tick apart
    buy: np.ndarray  # int64
    sell: np.ndarray  # int64
    delta: int
    volume: int
    poc: int  # a level
    value_area: tuple[int, int]  # (low level, high level)
    buy_imbalance: np.ndarray  # bool per row
    sell_imbalance: np.ndarray  # bool per row
    stacked: list[tuple[str, int, int]] = field(default_factory=list)  # (side, low, high)
    unfinished_high: bool = False
    unfinished_low: bool = False

    @property
    def level_delta(self) -> np.ndarray:
        return self.buy - self.sell


def dense(volumes: dict[int, tuple[int, int]], tick: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From {level: (buy, sell)} to ascending dense arrays, one row per tick."""
    if not volumes:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    low, high = min(volumes), max(volumes)
    levels = np.arange(low, high + tick, tick, dtype=np.int64)
    buy = np.zeros(levels.size, dtype=np.int64)
    sell = np.zeros(levels.size, dtype=np.int64)
    for level, (b, s) in volumes.items():
        i = (level - low) // tick
        buy[i] += b
        sell[i] += s
    return levels, buy, sell


def metrics(
    levels: np.ndarray, buy: np.ndarray, sell: np.ndarray, params: FootprintParams = FootprintParams()
) -> BarFootprint:
    n = levels.size
    if n == 0:
        raise ValueError("a footprint needs at least one level")
    total = buy + sell
    volume = int(total.sum())
    # POC: most volume; ties -> nearest the middle; equally near -> lower
    top = np.flatnonzero(total == total.max())
    middle2 = int(levels[0] + levels[-1])  # twice the middle, to stay in integers
    distance = np.abs(2 * levels[top] - middle2)
    poc_row = int(top[np.flatnonzero(distance == distance.min())[0]])
    lo, hi = _value_area(total, poc_row, params.value_area * volume)
    # diagonal imbalances
    sell_below = np.concatenate(([0], sell[:-1]))  # sell[p - 1 tick]; nothing below the low
    buy_above = np.concatenate((buy[1:], [0]))  # buy[p + 1 tick]; nothing above the high
    buy_imb = (buy >= params.min_volume) & ((sell_below == 0) | (buy >= params.ratio * sell_below))
    sell_imb = (sell >= params.min_volume) & ((buy_above == 0) | (sell >= params.ratio * buy_above))
    return BarFootprint(
        levels=levels,
        buy=buy,
        sell=sell,
        delta=int(buy.sum() - sell.sum()),
        volume=volume,
        poc=int(levels[poc_row]),
        value_area=(int(levels[lo]), int(levels[hi])),
        buy_imbalance=buy_imb,
        sell_imbalance=sell_imb,
        stacked=_stacked(levels, buy_imb, "buy", params.stacked)
        + _stacked(levels, sell_imb, "sell", params.stacked),
        unfinished_high=bool(buy[n - 1] > 0 and sell[n - 1] > 0),
        unfinished_low=bool(buy[0] > 0 and sell[0] > 0),
    )


def _value_area(total: np.ndarray, poc: int, target: float) -> tuple[int, int]:
    lo = hi = poc
    area = int(total[poc])
    n = total.size
    vols = total.tolist()
    while area < target and (lo > 0 or hi < n - 1):
        up = vols[hi + 1 : hi + 3]
        down = vols[max(lo - 2, 0) : lo]
        up_sum, down_sum = sum(up), sum(down)
        if up and (not down or up_sum >= down_sum):
            take_up = True
            take_down = bool(down) and up_sum == down_sum
        else:
            take_up, take_down = False, True
        if take_up:
            hi += len(up)
            area += up_sum
        if take_down:
            lo -= len(down)
            area += down_sum
    return lo, hi


def _stacked(levels: np.ndarray, flags: np.ndarray, side: str, minimum: int) -> list[tuple[str, int, int]]:
    zones: list[tuple[str, int, int]] = []
    run_start = None
    for i, flag in enumerate([*flags.tolist(), False]):
        if flag and run_start is None:
            run_start = i
        elif not flag and run_start is not None:
            if i - run_start >= minimum:
                zones.append((side, int(levels[run_start]), int(levels[i - 1])))
            run_start = None
    return zones
