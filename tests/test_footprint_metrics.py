"""Footprint metrics: worked examples done by hand (each written out), and properties."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from smarttrade.analytics.footprint import FootprintParams, dense, metrics


def fp(buy: list[int], sell: list[int], first: int = 100, **params: float):  # type: ignore[no-untyped-def]
    levels = np.arange(first, first + len(buy), dtype=np.int64)
    return metrics(
        levels, np.array(buy, dtype=np.int64), np.array(sell, dtype=np.int64), FootprintParams(**params)
    )


def test_worked_example_a() -> None:
    """Levels 100..104, buy (ask) = 0 10 30 5 12, sell (bid) = 8 3 20 2 0.

    Totals 8 13 50 7 12 = 90: POC 102. Value area target 0.7 * 90 = 63: from 50, the two above
    hold 7 + 12 = 19, the two below 13 + 8 = 21, so the pair below joins: 71 >= 63, VA 100..102.
    Buy imbalance at p when buy[p] >= 3 * sell[p-1] (and buy[p] >= 5): 102 (30 >= 9), 104 (12 >= 6);
    not 101 (10 < 24). Sell imbalance when sell[p] >= 3 * buy[p+1]: 102 (20 >= 15); not 100
    (8 < 30). Delta 57 - 33 = 24. No unfinished auction: the high has no seller, the low no buyer.
    """
    m = fp([0, 10, 30, 5, 12], [8, 3, 20, 2, 0])
    assert (m.poc, m.value_area, m.volume, m.delta) == (102, (100, 102), 90, 24)
    assert m.level_delta.tolist() == [-8, 7, 10, 3, 12]
    assert m.buy_imbalance.tolist() == [False, False, True, False, True]
    assert m.sell_imbalance.tolist() == [False, False, True, False, False]
    assert m.stacked == []
    assert (m.unfinished_high, m.unfinished_low) == (False, False)


def test_worked_example_b_stacked_and_zero_opposite() -> None:
    """Levels 10..14, buy = 6 6 6 0 1, sell = 0 0 0 9 1.

    Buy imbalances at 10, 11, 12: the opposite side (sell one tick below; below the low there is
    nothing) is zero and the buy volume 6 reaches the minimum of 5: three adjacent levels, a stacked
    buy zone 10..12. Sell imbalance at 13: 9 >= 3 * buy[14] = 3. At 14 both sides traded:
    an unfinished high. POC 13 (9); target 0.7 * 29 = 20.3: above offers 14 (2), below 12 and 11
    (12): below joins, 21 >= 20.3, VA 11..13.
    """
    m = fp([6, 6, 6, 0, 1], [0, 0, 0, 9, 1], first=10)
    assert m.buy_imbalance.tolist() == [True, True, True, False, False]
    assert m.sell_imbalance.tolist() == [False, False, False, True, False]
    assert m.stacked == [("buy", 10, 12)]
    assert (m.unfinished_high, m.unfinished_low) == (True, False)
    assert (m.poc, m.value_area) == (13, (11, 13))


def test_worked_example_c_poc_ties() -> None:
    """Equal volumes: the level nearest the bar's middle wins; equally near, the lower one."""
    assert fp([5, 9, 1, 9, 5], [0] * 5, first=0).poc == 1  # 1 and 3 both 1 from the middle 2
    assert fp([9, 1, 9, 1, 1], [0] * 5, first=0).poc == 2  # 2 is the middle itself
    assert fp([9, 1, 1, 9], [0] * 4, first=0).poc == 0  # 0 and 3, both 1.5 from 1.5


def test_worked_example_d_value_area_tie_takes_both_pairs() -> None:
    """Totals 10 10 50 10 10: above and below offer 20 each, so both join: VA is the whole bar."""
    m = fp([10, 10, 50, 10, 10], [0] * 5, first=0)
    assert (m.poc, m.value_area) == (2, (0, 4))


def test_min_volume_and_ratio_are_parameters() -> None:
    m = fp([0, 4, 0], [1, 0, 0], first=0, min_volume=3, ratio=4.0)
    assert m.buy_imbalance.tolist() == [False, True, False]  # 4 >= 4 * 1, and 4 >= 3
    m = fp([0, 4, 0], [1, 0, 0], first=0, min_volume=5)
    assert not m.buy_imbalance.any()


def test_dense_fills_the_empty_levels() -> None:
    levels, buy, sell = dense({1000: (1, 0), 1010: (0, 2)}, tick=5)
    assert levels.tolist() == [1000, 1005, 1010] and buy.tolist() == [1, 0, 0] and sell.tolist() == [0, 0, 2]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 200), st.booleans()), min_size=1, max_size=300))
def test_properties(trades: list[tuple[int, int, bool]]) -> None:
    volumes: dict[int, tuple[int, int]] = {}
    for offset, qty, is_buy in trades:
        b, s = volumes.get(1000 + 5 * offset, (0, 0))
        volumes[1000 + 5 * offset] = (b + qty, s) if is_buy else (b, s + qty)
    levels, buy, sell = dense(volumes, tick=5)
    total = sum(q for _, q, _ in trades)
    if total == 0:
        return
    m = metrics(levels, buy, sell)
    assert m.volume == total == int(buy.sum() + sell.sum())  # level volumes add up to the trades'
    assert m.delta == sum(q if b else -q for _, q, b in trades)
    lo, hi = m.value_area
    assert lo <= m.poc <= hi
    inside = (levels >= lo) & (levels <= hi)
    assert (buy + sell)[inside].sum() >= 0.7 * total
    assert (buy + sell)[levels == m.poc].item() == (buy + sell).max()
