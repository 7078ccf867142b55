"""The live synthetic feed and the demo, through the CLI against a real server."""

from __future__ import annotations

import json
import re

import pytest
import redis


def _orderflow_trades(port: int, symbol: str) -> int:
    """Trades in the order-flow buckets of ``symbol`` (every bucket outlives a short run)."""
    count = 0
    with redis.Redis(port=port, db=1) as db:
        for key in db.scan_iter(match=f"orderflow:{symbol}:*", count=1000):
            count += len(json.loads(db.get(key))["trades"])
    return count


@pytest.mark.parametrize("command", ["ingest", "demo"])
def test_the_live_feed_takes_20000_trades_per_second(cli, command: str) -> None:
    """Above ~6,800 trades/s a step needed more than one more generator chunk and crashed."""
    args = ["--symbols", "WIN,WDO", "--rate", "20000", "--duration", "3"]
    if command == "ingest":
        result = cli.smarttrade("ingest", "--synthetic", *args, "--json")
    else:
        result = cli.smarttrade("demo", *args)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    if command == "ingest":
        stats = json.loads(result.stdout)
        committed, abandoned = stats["trades"], stats["abandoned"]
    else:
        done = re.search(r"^done: ([\d,]+) trades", result.stdout, re.M)
        assert done, result.stdout
        committed, abandoned = int(done[1].replace(",", "")), 0
    assert committed > 20_000  # many steps of ~2,000 trades, each past one generator chunk
    assert abandoned == 0
    assert sum(_orderflow_trades(cli.server.port, s) for s in ("WIN", "WDO")) == committed


def test_a_huge_live_rate_comes_in_bounded_parts() -> None:
    from smarttrade.feeds.synthetic import LIVE_PART, LiveSyntheticFeed

    parts = LiveSyntheticFeed(["WIN"], rate=1e9).chunks()
    first, second = next(parts), next(parts)
    assert len(first) == len(second) == LIVE_PART  # one 50 ms step, yielded in parts
    assert first.ordinal[-1] + 1 == second.ordinal[0]
    with pytest.raises(ValueError, match="rate"):
        LiveSyntheticFeed(["WIN"], rate=float("inf"))


def _done(stdout: str) -> tuple[int, int]:
    """(trades, back-filled) from the demo's summary line."""
    done = re.search(r"^done: ([\d,]+) trades .*?\((?:([\d,]+) back-filled|none back-filled)", stdout, re.M)
    assert done, stdout
    return int(done[1].replace(",", "")), int((done[2] or "0").replace(",", ""))


def test_the_demo_has_indicators_from_its_first_seconds(cli) -> None:
    """A back-filled past (2 h, at full speed) closes enough 1m bars for every indicator."""
    first = cli.smarttrade("demo", "--symbols", "WIN", "--duration", "2")
    assert first.returncode == 0, first.stderr
    trades, backfilled = _done(first.stdout)
    assert backfilled > 5_000 and re.search(rf"then {trades - backfilled:,} live", first.stdout)
    assert _orderflow_trades(cli.server.port, "WIN") == trades
    result = cli.smarttrade("indicators", "WIN", "--json")
    assert result.returncode == 0, result.stderr
    closed = json.loads(result.stdout)["closed"]
    for name in ("rsi", "macd_1m", "macd_signal_1m", "bb_upper_1m", "bb_lower_1m", "atr_14_1m"):
        assert isinstance(closed[name]["value"], float), name
    # started again at once, it back-fills only the seconds since the first one stopped
    again = cli.smarttrade("demo", "--symbols", "WIN", "--duration", "1")
    assert again.returncode == 0, again.stderr
    trades2, backfilled2 = _done(again.stdout)
    assert backfilled2 < 50 * 30  # under 30 s at the live rate, not another 2 h
    assert _orderflow_trades(cli.server.port, "WIN") == trades + trades2


def test_every_pass_over_a_replay_gives_the_same_trades() -> None:
    """A resumed or rewound run regenerates its input: the second pass must equal the first."""
    from datetime import date

    from smarttrade.feeds.synthetic import SyntheticFeed

    feed = SyntheticFeed(["WIN", "DOL"], seed=5, count=40_000, start_day=date(2025, 11, 24))
    first, second = (list(feed.chunks()) for _ in range(2))
    assert [c.price.tolist() for c in first] == [c.price.tolist() for c in second]
