"""Bars and per-bar footprints as the ingester writes them: volumes add up, a cancelled trade
leaves no trace, sessions are kept apart, and the CLI shows them."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import date

import redis

from smarttrade.feeds.synthetic import SyntheticFeed
from smarttrade.ingest.run import ChunkFeed, run_feed
from smarttrade.ingest.sources import Format, file_feed
from tests.test_feeds import DATA, sao_paulo_us


def bar_footprints(server, symbol: str, tf: str = "1m") -> dict[int, dict[tuple[int, str], int]]:
    bars = redis.Redis(port=server.port, db=1, decode_responses=True)
    fps = redis.Redis(port=server.port, db=2, decode_responses=True)
    out = {}
    for start in bars.zrange(f"bars:{symbol}:{tf}", 0, -1):
        raw = fps.hgetall(f"fpbar:{symbol}:{tf}:{start}")
        out[int(start)] = {(int(k[2:]), k[0]): int(v) for k, v in raw.items() if int(v)}
    return out


async def test_cancelled_trade_leaves_no_trace_in_bar_footprints(server, pools, settings, tmp_path) -> None:
    await run_feed(pools, settings, file_feed(Format.B3, [DATA / "b3_trades.txt"]), tmp_path / "dead")
    # what the order flow holds (the cancelled trade removed) is exactly what the bars counted
    flow = redis.Redis(port=server.port, db=1, decode_responses=True)
    expected: dict[int, dict[tuple[int, str], int]] = defaultdict(lambda: defaultdict(int))
    for key in flow.scan_iter("orderflow:WINZ25:*"):
        for t in json.loads(flow.get(key))["trades"]:
            start = int(t["time"]) // 60 * 60
            expected[start][(int(t["price"]), "b" if t["side"] == "buy" else "s")] += t["volume"]
    got = bar_footprints(server, "WINZ25")
    assert got == {k: dict(v) for k, v in expected.items()}
    nine = sao_paulo_us("2025-11-24T09:00:00") // 1_000_000
    assert got[nine] == {(125000, "b"): 5, (125005, "b"): 2, (125000, "s"): 4}  # no 125005 x3
    bar = flow.hgetall(f"bar:WINZ25:1m:{nine}")
    assert (bar["volume"], bar["buy"], bar["sell"], bar["delta"]) == ("11", "7", "4", "3")
    # the session VWAP leaves the cancelled trade out too: (125000*5 + 125005*2 + 125000*4 +
    # 124995*1) / 12
    vwap = json.loads(redis.Redis(port=server.port, db=3).get("calc:WINZ25:vwap"))
    assert abs(vwap["value"] - 1_500_005 / 12) < 1e-9


async def test_bar_volumes_add_up_to_the_trades(server, pools, settings) -> None:
    syn = SyntheticFeed(["WDO"], seed=21, count=20_000, start_day=date(2025, 11, 24))
    total = sum(
        int(c.qty.sum())
        for c in SyntheticFeed(["WDO"], seed=21, count=20_000, start_day=date(2025, 11, 24)).chunks()
    )
    await run_feed(pools, settings, ChunkFeed(syn.chunks, syn.name), None)
    bars = redis.Redis(port=server.port, db=1, decode_responses=True)
    for tf in ("1m", "5m", "15m"):
        starts = bars.zrange(f"bars:WDO:{tf}", 0, -1)
        assert sum(int(bars.hget(f"bar:WDO:{tf}:{s}", "volume")) for s in starts) == total
        assert sum(sum(v.values()) for v in bar_footprints(server, "WDO", tf).values()) == total
        # every bar, bar footprint and bar list expires (BAR_TTL, two days)
        fps = redis.Redis(port=server.port, db=2)
        assert all(0 < bars.ttl(f"bar:WDO:{tf}:{s}") <= 2 * 86_400 for s in starts)
        assert all(0 < fps.ttl(f"fpbar:WDO:{tf}:{s}") <= 2 * 86_400 for s in starts)
        assert 0 < bars.ttl(f"bars:WDO:{tf}") <= 2 * 86_400


async def test_sessions_are_kept_apart(server, pools, settings, tmp_path) -> None:
    """A trade at 18:40 is after-hours: its own bar, no indicators; cumulative delta restarts."""
    path = tmp_path / "t.csv"
    rows = ["symbol,price,volume,side,time,trade_id"]
    for i, (clock, side) in enumerate(
        [("18:20:00", "buy"), ("18:24:30", "buy"), ("18:40:00", "sell"), ("18:41:00", "sell")]
    ):
        stamp = sao_paulo_us(f"2025-11-24T{clock}") / 1e6
        rows.append(f"WIN,125000,2,{side},{stamp},t{i}")
    path.write_text("\n".join(rows) + "\n")
    await run_feed(pools, settings, file_feed(Format.CSV, [path]), tmp_path / "dead")
    bars = redis.Redis(port=server.port, db=1, decode_responses=True)
    sessions = {}
    for start in bars.zrange("bars:WIN:1m", 0, -1):
        b = bars.hgetall(f"bar:WIN:1m:{start}")
        sessions.setdefault(b["session"], []).append(int(b["cum_delta"]))
    assert sessions == {"2025-11-24/regular": [2, 4], "2025-11-24/after": [-2, -4]}


def test_footprint_and_indicators_commands(cli, tmp_path) -> None:
    result = cli.smarttrade(
        "ingest", "--synthetic", "--count", "60000", "--symbols", "WIN", "--start-day", "2025-11-24",
        "--dead-letter", str(tmp_path / "d"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    ladder = cli.smarttrade("footprint", "WIN", "--tf", "1m")
    assert ladder.returncode == 0, ladder.stderr
    assert "POC" in ladder.stdout and "value area" in ladder.stdout and "◆" in ladder.stdout
    data = json.loads(cli.smarttrade("footprint", "WIN", "--tf", "5m", "--bars", "3", "--json").stdout)
    assert len(data) == 3
    fp = data[-1]["footprint"]
    assert fp["value_area"][0] <= fp["poc"] <= fp["value_area"][1]
    assert (
        sum(level["bid"] + level["ask"] for level in fp["levels"]) == fp["volume"] == int(data[-1]["volume"])
    )
    shown = cli.smarttrade("indicators", "WIN")
    assert shown.returncode == 0 and "rsi_14_1m" in shown.stdout
    values = json.loads(cli.smarttrade("indicators", "WIN", "--json").stdout)
    assert values["closed"]["rsi"]["period"] == 14 and "1m" in values["forming"]
    missing = cli.smarttrade("footprint", "DOL")
    assert missing.returncode == 1 and "no 1m bars for DOL" in missing.stderr
    wrong = cli.smarttrade("footprint", "WIN", "--tf", "7m")
    assert wrong.returncode == 1 and "is not one of" in wrong.stderr


def test_cancelled_levels_do_not_stretch_the_ladder(cli, tmp_path) -> None:
    """A level whose only trade was cancelled holds 0 in the bar's footprint hash: it is not a
    traded level, so it neither widens the ladder nor moves the POC tie-break."""
    result = cli.smarttrade(
        "ingest", "--format", "b3", str(DATA / "b3_trades.txt"), "--dead-letter", str(tmp_path / "d")
    )
    assert result.returncode == 0, result.stderr
    bars = json.loads(cli.smarttrade("footprint", "WINZ25", "--tf", "1m", "--bars", "5", "--json").stdout)
    nine = sao_paulo_us("2025-11-24T09:00:00") // 1_000_000
    (bar,) = [b for b in bars if b["start"] == nine]
    levels = {lv["price"]: (lv["ask"], lv["bid"]) for lv in bar["footprint"]["levels"]}
    assert levels == {125000.0: (5, 4), 125005.0: (2, 0)}
