"""Indicators equal to TA-Lib 0.8 to 1e-9: directly, across a save/restore of their state, and
end to end through the ingester (bars built from trades, stopped and restarted half way)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime

import msgspec
import numpy as np
import pytest
import redis
import talib

from smarttrade.analytics.indicators import Atr, Bollinger, Ema, Macd, Rsi, Sma
from smarttrade.feeds.chunk import SIDE_SOURCE, Chunk
from smarttrade.ingest.run import ChunkFeed, run_feed
from tests.conftest import settings_for

TOL = 1e-9


def series(n: int = 2500, seed: int = 7, base: float = 125_000.0, tick: float = 5.0) -> dict[str, np.ndarray]:
    """Bars with flat stretches, price gaps and large moves."""
    rng = np.random.default_rng(seed)
    steps = np.round(rng.normal(0, 2, n))
    steps[200:380] = 0  # a flat stretch: RSI's zero-movement case, zero deviation
    steps[1000:1010] = 0
    steps[700] = 400  # a gap up
    steps[1600] = -650  # a gap down
    steps[2000:2040] = 25  # a run
    close = base + np.cumsum(steps) * tick
    wick = np.abs(np.round(rng.normal(0, 1.5, n))) * tick
    high = close + wick
    low = close - np.abs(np.round(rng.normal(0, 1.5, n))) * tick
    flat = slice(200, 380)
    high[flat] = low[flat] = close[flat]
    return {"close": close, "high": high, "low": low}


def values(out: list[object], k: int | None = None) -> np.ndarray:
    return np.array([np.nan if v is None else (v[k] if k is not None else v) for v in out], dtype=float)


def same(ours: np.ndarray, ref: np.ndarray) -> None:
    differ = np.flatnonzero(np.isnan(ours) != np.isnan(ref))
    assert differ.size == 0, (
        f"valid on different bars from {differ[:5]}: {ours[differ[:3]]} vs {ref[differ[:3]]}"
    )
    valid = ~np.isnan(ref)
    assert valid.sum() > 2000
    assert np.max(np.abs(ours[valid] - ref[valid])) <= TOL


@pytest.mark.parametrize(("base", "tick"), [(125_000.0, 5.0), (5_234.5, 0.5)])
def test_each_indicator_equals_talib(base: float, tick: float) -> None:
    s = series(base=base, tick=tick)
    c, h, lo = s["close"], s["high"], s["low"]
    same(values(_run(Sma(20), c)), talib.SMA(c, 20))
    same(values(_run(Ema(20), c)), talib.EMA(c, 20))
    same(values(_run(Rsi(14), c)), talib.RSI(c, 14))
    macd = _run(Macd(12, 26, 9), c)
    for k, ref in enumerate(talib.MACD(c, 12, 26, 9)):
        same(values(macd, k), ref)
    bands = _run(Bollinger(20, 2.0, 2.0), c)
    for k, ref in enumerate(talib.BBANDS(c, 20, 2.0, 2.0, 0)):
        same(values(bands, k), ref)
    atr = Atr(14)
    same(values([atr.update(a, b, x) for a, b, x in zip(h, lo, c, strict=True)]), talib.ATR(h, lo, c, 14))


def _run(indicator, xs: np.ndarray) -> list[object]:  # type: ignore[no-untyped-def]
    return [indicator.update(float(x)) for x in xs]


def test_flat_series_gives_zero_rsi_and_zero_width_bands() -> None:
    flat = np.full(60, 5234.5)
    assert talib.RSI(flat, 14)[-1] == 0.0 and Rsi(14).update(5234.5) is None
    rsi = Rsi(14)
    assert [rsi.update(x) for x in flat][-1] == 0.0
    bb = Bollinger(20, 2.0, 2.0)
    upper, middle, lower = [bb.update(x) for x in flat][-1]  # type: ignore[misc]
    assert upper == middle == lower == 5234.5


def test_state_survives_a_save_and_restore() -> None:
    """Stop half way, save the state as JSON, restore into new objects: the rest is unchanged."""
    c = series()["close"]
    whole = _run(Macd(), c)
    first = Macd()
    _run(first, c[:1234])
    restored = Macd()
    restored.load(msgspec.json.decode(msgspec.json.encode(first.state())))
    assert _run(restored, c[1234:]) == whole[1234:]
    for cls in (lambda: Rsi(14), lambda: Bollinger(20, 2.0, 2.0), lambda: Ema(20), lambda: Sma(20)):
        a, b = cls(), cls()
        _run(a, c[:777])
        b.load(msgspec.json.decode(msgspec.json.encode(a.state())))
        assert _run(b, c[777:]) == _run(a, c[777:])


def test_peek_is_the_next_update() -> None:
    c = series()["close"]
    for make in (
        lambda: Rsi(14),
        lambda: Macd(),
        lambda: Bollinger(20, 2.0, 2.0),
        lambda: Ema(20),
        lambda: Sma(20),
    ):
        ind = make()
        for x in c[:400]:
            peeked = ind.peek(float(x))
            assert peeked == ind.update(float(x))


# -- end to end: trades -> bars -> indicators, through the ingester ---------------------------

START = int(datetime(2025, 11, 24, 3, 0, tzinfo=UTC).timestamp())  # 00:00 in Sao Paulo
CALENDAR = "regular=00:00-23:59"  # every minute of the day is one session's


def minute_trades(closes: np.ndarray, gaps: set[int]) -> Iterator[Chunk]:
    """Three trades a minute (the last one the minute's close); minutes in ``gaps`` are silent."""
    ordinal = 0
    for minute, close in enumerate(closes.tolist()):
        if minute in gaps:
            continue
        t0 = START + minute * 60
        prices = np.array([close - 10, close + 10, close], dtype=np.int64)
        n = prices.size
        ordinal += n
        yield Chunk(
            symbols=["WIN"],
            code=np.zeros(n, dtype=np.int16),
            price=prices,
            qty=np.array([1, 2, 3], dtype=np.int64),
            side=np.array([1, -1, 1], dtype=np.int8),
            side_src=np.full(n, SIDE_SOURCE, dtype=np.int8),
            time_us=(t0 + np.array([5, 25, 45])) * 1_000_000,
            bid=np.zeros(n, dtype=np.int64),
            ask=np.zeros(n, dtype=np.int64),
            cancel=np.zeros(n, dtype=bool),
            ordinal=np.arange(ordinal - n + 1, ordinal + 1, dtype=np.int64),
            end_ordinal=ordinal,
        )


async def test_ingested_bars_carry_talib_exact_indicators(server, pools) -> None:
    minutes = 2300
    steps = series(minutes, seed=11)["close"]
    closes = (np.round(steps / 5) * 5).astype(np.int64)
    gaps = set(range(900, 960)) | {1500, 1501}  # no trades: no bar
    gaps |= set(range(1439, minutes, 1440))  # 23:59 is outside the test's session: off-session bars
    settings = settings_for(server.url, smarttrade_sessions=CALENDAR, smarttrade_timeframes="1m,5m")
    half = list(itertools.islice(minute_trades(closes, gaps), 1100))
    # first run stops half way; the second (same source) resumes from the saved state
    await run_feed(pools, settings, ChunkFeed(lambda: iter(half), "bars-test"), None)
    result = await run_feed(
        pools, settings, ChunkFeed(lambda: minute_trades(closes, gaps), "bars-test"), None
    )
    assert result.stats.resumed == 3 * 1100
    r = redis.Redis(port=server.port, db=1, decode_responses=True)
    starts = [int(s) for s in r.zrange("bars:WIN:1m", 0, -1)]
    bars = [r.hgetall(f"bar:WIN:1m:{s}") for s in starts]
    closed = [b for b in bars if b.get("closed") == "1"]
    assert len(closed) == len(bars) - 1 >= 2000  # every bar but the forming one
    c = np.array([float(b["close"]) for b in closed])
    h = np.array([float(b["high"]) for b in closed])
    lo = np.array([float(b["low"]) for b in closed])
    expected = {
        "rsi_14": talib.RSI(c, 14),
        "sma_20": talib.SMA(c, 20),
        "ema_20": talib.EMA(c, 20),
        "atr_14": talib.ATR(h, lo, c, 14),
        **dict(zip(("macd", "macd_signal", "macd_hist"), talib.MACD(c, 12, 26, 9), strict=True)),
        **dict(zip(("bb_upper", "bb_middle", "bb_lower"), talib.BBANDS(c, 20, 2.0, 2.0, 0), strict=True)),
    }
    for name, ref in expected.items():
        ours = np.array([float(b[name]) if name in b else np.nan for b in closed])
        same(ours, ref)
    # the contract key: RSI 14 on 1m closes, in the calculations store with its TTL
    calc = redis.Redis(port=server.port, db=3)
    rsi = msgspec.json.decode(calc.get("calc:WIN:rsi"))
    assert rsi["period"] == 14 and abs(rsi["value"] - expected["rsi_14"][-1]) <= TOL
    assert 1790 <= calc.ttl("calc:WIN:rsi") <= 1800
    r.close()
    calc.close()
