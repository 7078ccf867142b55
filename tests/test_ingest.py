"""The ingest engine end to end against a real server: every store, cancels, exactness, resume."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import date
from pathlib import Path

import redis

from smarttrade.feeds.synthetic import SyntheticFeed
from smarttrade.ingest.run import ChunkFeed, run_feed
from smarttrade.ingest.sources import Format, file_feed
from smarttrade.stores import Stores
from smarttrade.symbols import register
from tests.test_feeds import DATA, sao_paulo_us

register("BTCUSDT:0.1:6")


def db(server, n: int) -> redis.Redis:
    return redis.Redis(port=server.port, db=n, decode_responses=True)


async def test_b3_file_into_every_store(server, pools, settings, stores: Stores, tmp_path: Path) -> None:
    dead = tmp_path / "dead.jsonl"
    feed = file_feed(Format.B3, [DATA / "b3_trades.txt"])
    result = await run_feed(pools, settings, feed, dead)
    assert (result.stats.trades, result.stats.cancels, result.rejected, result.skipped) == (8, 1, 3, 1)
    # Footprint, worked out by hand from the fixture (tick rule, first trade a buy by default):
    # WINZ25 125000 x5 buy (first), 125005 x3 buy (up; cancelled later), 125005 x2 buy (unchanged),
    # 125000 x4 sell (down), 124995 x1 sell (down). WDOF26 5234.5 x10 buy, 5235 x2 buy, 5234 x7 sell.
    ladder = {lv: (fp.buy_volume, fp.sell_volume) for lv, fp in await stores.footprint.ladder("WINZ25")}
    assert ladder == {125005: (2, 0), 125000: (5, 4), 124995: (0, 1)}
    wdo = {lv: (fp.buy_volume, fp.sell_volume) for lv, fp in await stores.footprint.ladder("WDOF26")}
    assert wdo == {5235000: (2, 0), 5234500: (10, 0), 5234000: (0, 7)}
    # the cancelled trade left no trace in its order-flow bucket, nor in that second's quote
    second = sao_paulo_us("2025-11-24T09:00:00") // 1_000_000
    bucket = await stores.orderflow.second("WINZ25", second)
    assert bucket is not None and [(t.price, t.volume, t.side) for t in bucket.trades] == [(125000, 5, "buy")]
    quote = await stores.quotes.get("WINZ25", second)
    assert quote is not None and (quote.price, quote.volume) == (125000, 5)
    latest = await stores.quotes.latest("WINZ25")
    assert latest is not None and (latest.price, latest.timestamp) == (124995, second + 3600)
    # dead letters: line number, raw text and reason
    letters = [json.loads(line) for line in dead.read_text().splitlines()]
    assert [(d["line"], d["reason"].split(":")[0]) for d in letters] == [
        (9, "PrecoNegocio"),
        (10, "QuantidadeNegociada"),
        (11, "AcaoAtualizacao"),
    ]
    assert letters[0]["raw"].startswith("2025-11-24;WINZ25;0;abc;")
    # the trade stream and the checkpoint
    entries = db(server, 1).xrange("stream:trades:WINZ25")
    assert entries and json.loads(entries[0][1]["trades"])[0] == {
        "price": 125000,
        "volume": 5,
        "side": "buy",
        "time": sao_paulo_us("2025-11-24T09:00:00.123") / 1e6,
    }
    assert entries[0][1]["src"].startswith("d")  # the first trade's side is the default
    (checkpoint,) = db(server, 0).scan_iter("ingest:checkpoint:b3-b3_trades.txt-*:WINZ25")
    assert db(server, 0).hgetall(checkpoint)["ordinal"] == "14"
    # a second run finds everything committed: nothing changes, nothing is dead-lettered twice
    again = await run_feed(pools, settings, file_feed(Format.B3, [DATA / "b3_trades.txt"]), dead)
    assert again.stats.trades == 0 and again.stats.resumed == 9
    assert len(dead.read_text().splitlines()) == 3
    assert {
        lv: (fp.buy_volume, fp.sell_volume) for lv, fp in await stores.footprint.ladder("WINZ25")
    } == ladder


async def test_classified_sides_reach_the_order_flow(pools, settings, stores: Stores, tmp_path) -> None:
    await run_feed(pools, settings, file_feed(Format.CSV, [DATA / "trades.csv"]), tmp_path / "d.jsonl")
    first = await stores.orderflow.second("DOL", 1763985600)
    assert first is not None and [t.side for t in first.trades] == ["buy", "buy"]  # source, then at the ask
    later = await stores.orderflow.second("DOL", 1763985601)
    assert later is not None and [t.side for t in later.trades] == ["sell"]  # at the bid


async def test_fractional_quantities_stay_exact(server, pools, settings, tmp_path) -> None:
    await run_feed(pools, settings, file_feed(Format.TARDIS, [DATA / "tardis_trades.csv"]), tmp_path / "d")
    raw = json.loads(db(server, 2).get("footprint:BTCUSDT:971234"))
    assert (raw["buy_volume"], raw["sell_volume"], raw["total_volume"]) == (0.001235, 0.1, 0.101235)
    assert db(server, 2).get("footprint:BTCUSDT:971234").count("0.001235") == 1  # no 0.0012349999
    bucket = json.loads(db(server, 1).get("orderflow:BTCUSDT:1763985600"))
    assert [t["time"] for t in bucket["trades"]] == [1763985600.123456, 1763985600.223456, 1763985600.323456]


async def test_volumes_add_up_and_every_trade_lands(server, pools, settings, stores: Stores) -> None:
    syn = SyntheticFeed(["DOL", "WIN"], seed=3, count=30_000, start_day=date(2025, 11, 24))
    expected: dict[str, list[int]] = {"DOL": [0, 0], "WIN": [0, 0]}
    count = {"DOL": 0, "WIN": 0}
    for chunk in SyntheticFeed(["DOL", "WIN"], seed=3, count=30_000, start_day=date(2025, 11, 24)).chunks():
        for code, symbol in enumerate(chunk.symbols):
            mask = chunk.code == code
            expected[symbol][0] += int(chunk.qty[mask & (chunk.side > 0)].sum())
            expected[symbol][1] += int(chunk.qty[mask & (chunk.side < 0)].sum())
            count[symbol] += int(mask.sum())
    result = await run_feed(pools, settings, ChunkFeed(syn.chunks, syn.name, total=30_000), None)
    assert result.stats.trades == 30_000
    for symbol in ("DOL", "WIN"):
        levels = [fp for _, fp in await stores.footprint.ladder(symbol)]
        assert [sum(fp.buy_volume for fp in levels), sum(fp.sell_volume for fp in levels)] == expected[symbol]
        trades = 0
        async for key in db_async(server, 1).scan_iter(match=f"orderflow:{symbol}:*", count=1000):
            trades += len(json.loads(await db_async(server, 1).get(key))["trades"])
        assert trades == count[symbol]


def db_async(server, n: int):
    import redis.asyncio as aioredis

    return aioredis.Redis(port=server.port, db=n)


async def test_one_pubsub_message_per_commit(server, pools, settings) -> None:
    import redis.asyncio as aioredis

    sub = aioredis.Redis(port=server.port).pubsub()
    await sub.subscribe("trades:WIN")
    await sub.get_message(timeout=1)  # the subscribe confirmation
    syn = SyntheticFeed(["WIN"], seed=5, count=500, start_day=date(2025, 11, 24))
    await run_feed(pools, settings, ChunkFeed(syn.chunks, syn.name, total=500), None)
    message = await sub.get_message(timeout=2)
    assert message is not None
    body = json.loads(message["data"])
    assert body["symbol"] == "WIN" and body["seq"] == 1 and len(body["trades"]) == 500
    assert body["quote"]["symbol"] == "WIN"
    await sub.aclose()


async def test_a_replayed_commit_is_skipped(server, pools, settings) -> None:
    """The same sequence number sent twice (a retry after a lost reply) is applied once."""
    from smarttrade.ingest.engine import Engine

    syn = SyntheticFeed(["WDO"], seed=9, count=200, start_day=date(2025, 11, 24))
    chunk = next(syn.chunks())
    engine = Engine(pools, settings, "retry-test")
    commits = engine._commits([chunk])
    first = await engine._eval_all(commits)
    second = await engine._eval_all(commits)
    assert [r[0] for r in first] == [1] and [r[0] for r in second] == [0]
    total = sum(
        json.loads(db(server, 2).get(k))["total_volume"] for k in db(server, 2).scan_iter("footprint:WDO:*")
    )
    assert total == int(chunk.qty.sum())


def test_ingest_cli_then_get(tmp_path: Path, cli) -> None:
    result = cli.smarttrade(
        "ingest", "--format", "b3", str(DATA / "b3_trades.txt"), "--dead-letter", str(tmp_path / "d")
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"trades committed\s*│\s*8\b", result.stdout), result.stdout
    got = json.loads(cli.smarttrade("get", "footprint:WINZ25:125000", "--json").stdout)
    assert (got["buy_volume"], got["sell_volume"]) == (5, 4)


def test_ingest_cli_usage_errors(cli) -> None:
    for args, message in [
        (["ingest"], "give --format and FILE..., or --synthetic"),
        (["ingest", "--format", "b3", "/nonexistent"], "not a readable file"),
        (["ingest", "--synthetic", "--symbols", "XXX"], "unknown symbol"),
        (["ingest", "--synthetic", "--speed", "fast"], "neither 'max' nor a number"),
    ]:
        result = cli.smarttrade(*args)
        assert result.returncode == 2, args
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr


async def test_live_api_one_trade_at_a_time(pools, settings, stores: Stores, tmp_path: Path) -> None:
    from smarttrade.feeds.record import BUY, SELL, UNKNOWN, TradeRecord
    from smarttrade.ingest.deadletter import DeadLetters
    from smarttrade.ingest.engine import Engine
    from smarttrade.ingest.live import LiveIngest

    engine = Engine(pools, settings, "live-test")
    live = LiveIngest(engine, DeadLetters(tmp_path / "dead.jsonl", "live-test"))
    await live.start()
    t0 = 1_763_985_600_000_000
    trades = [
        TradeRecord("WIN", 125000, 2, BUY, t0, "a"),
        TradeRecord("WIN", 125005, 1, UNKNOWN, t0 + 1000, "b"),  # up: buy by the tick rule
        TradeRecord("WIN", 125000, 3, SELL, t0 + 2000, "c"),
        TradeRecord("WIN", 125000, 3, SELL, t0 - 60_000_000, "d"),  # a minute late: rejected
        TradeRecord("WIN", 125005, 1, UNKNOWN, t0 + 3000, "b", cancel=True),
    ]
    accepted = [await live.submit(t) for t in trades]
    await live.close()
    assert accepted == [True, True, True, False, True]
    ladder = {lv: (fp.buy_volume, fp.sell_volume) for lv, fp in await stores.footprint.ladder("WIN")}
    assert ladder == {125000: (2, 3)}  # the cancelled buy at 125005 left nothing
    bucket = await stores.orderflow.second("WIN", t0 // 1_000_000)
    assert bucket is not None and [(t.volume, t.side) for t in bucket.trades] == [(2, "buy"), (3, "sell")]
    assert "before the latest WIN trade" in (tmp_path / "dead.jsonl").read_text()


async def test_a_commit_cannot_jump_the_queue(server, pools, settings) -> None:
    """With several rounds on the wire, a commit whose predecessor failed is refused (GAP)."""
    from smarttrade.ingest.engine import Engine

    syn = SyntheticFeed(["WDO"], seed=4, count=400, chunk=200, start_day=date(2025, 11, 24))
    first_chunk, second_chunk = list(syn.chunks())
    engine = Engine(pools, settings, "gap-test")
    first, second = engine._commits([first_chunk]), engine._commits([second_chunk])
    refused = await engine._eval_all(second)
    assert "GAP" in str(refused[0])
    assert [r[0] for r in await engine._eval_all(first)] == [1]
    assert [r[0] for r in await engine._eval_all(second)] == [1]
    assert db(server, 0).hget("ingest:checkpoint:gap-test:WDO", "seq") == "2"


async def test_a_second_live_session_adds_its_trades(pools, settings, stores: Stores) -> None:
    """Sessions of the live API continue the source's sequence numbers: nothing is dropped."""
    from smarttrade.feeds.record import BUY, TradeRecord
    from smarttrade.ingest.engine import Engine
    from smarttrade.ingest.live import LiveIngest

    t0 = 1_763_985_600_000_000
    for session in range(2):
        live = LiveIngest(Engine(pools, settings, "live-twice"))
        await live.start()
        for i in range(50):
            await live.submit(TradeRecord("WIN", 125000, 1, BUY, t0 + session * 10**6 + i * 1000))
        await live.close()
        assert live.engine.stats.trades == 50
    level = await stores.footprint.level("WIN", 125000)
    assert level is not None and level.buy_volume == 100


async def test_a_checkpoint_moved_back_stops_the_run(server, pools, settings) -> None:
    """If the checkpoint goes backwards under a running ingester, it stops instead of spinning."""
    import pytest

    from smarttrade.errors import SmartTradeError
    from smarttrade.ingest.engine import Engine

    syn = SyntheticFeed(["WDO"], seed=4, count=600, chunk=200, start_day=date(2025, 11, 24))
    chunks = list(syn.chunks())
    engine = Engine(pools, settings, "moved-back")
    await engine.load_checkpoints()
    engine.start()
    await engine.feed(chunks[0])
    await engine.feed(chunks[1])
    for _ in range(100):
        if engine.checkpoints.get("WDO") and engine.checkpoints["WDO"].seq >= 1:
            break
        await asyncio.sleep(0.01)
    db(server, 0).hset("ingest:checkpoint:moved-back:WDO", "seq", 0)  # someone resets it
    await asyncio.sleep(0.1)
    await engine.feed(chunks[2])
    with pytest.raises(SmartTradeError, match="moved backwards"):
        await asyncio.wait_for(engine.close(), 20)
