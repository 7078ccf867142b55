"""Issue 9 (items 2-5, 7): an ingest is trustworthy on real files. A source is its content, rejected
lines are never done, reset and flush never double-count, one future trade poisons nothing, and a
wrong file fails with its reason. Every comparison is against one clean run on the same server."""

from __future__ import annotations

import json
import random
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from smarttrade.errors import SmartTradeError
from smarttrade.feeds.files import parse_lines, read_lines
from smarttrade.feeds.generic import CsvParser
from smarttrade.ingest.deadletter import DeadLetters
from smarttrade.ingest.engine import Engine
from smarttrade.ingest.normalize import Normalizer
from smarttrade.ingest.run import run_feed
from smarttrade.ingest.sources import Format, file_feed

HEADER = "symbol,price,volume,side,time,trade_id\n"
T0 = datetime(2025, 11, 24, 12, 0, tzinfo=UTC).timestamp()  # 09:00 in Sao Paulo: the session


def dol_lines(n: int, start: int = 0, seed: int = 7, t0: float = T0, step: float = 0.5) -> list[str]:
    """``n`` DOL trades (tick 0.5), one every ``step`` seconds, ids from ``start``."""
    rng = random.Random(seed + start)
    price = 5300.0
    out = []
    for i in range(start, start + n):
        price += rng.choice((-0.5, 0, 0.5))
        side = rng.choice(("buy", "sell", ""))
        out.append(f"DOL,{price:.1f},{rng.randint(1, 20)},{side},{t0 + i * step:.3f},d{i}\n")
    return out


def write(path: Path, lines: list[str], header: bool = True) -> Path:
    path.write_text((HEADER if header else "") + "".join(lines))
    return path


def stores_of(port: int) -> dict[str, object]:
    """Every market-data key of dbs 0-3 by value: quotes, buckets, footprint levels, bars, bar
    footprints, bar lists, calculations, and each stream's trades in order (stream ids, commit
    sequence numbers, checkpoints and ops figures depend on batching, not on the data; a stream's
    epoch on when the stream began)."""
    out: dict[str, object] = {}
    for n in range(4):
        with redis.Redis(port=port, db=n) as r:
            for key in r.scan_iter(count=1000):
                name = key.decode()
                if name.startswith(("ingest:", "ops:", "stream:epoch:")):  # epoch: when it was made
                    continue
                kind = r.type(key)
                if kind == b"string":
                    out[f"{n}/{name}"] = json.loads(r.get(key))
                elif kind == b"hash":
                    out[f"{n}/{name}"] = r.hgetall(key)
                elif kind == b"zset":
                    out[f"{n}/{name}"] = r.zrange(key, 0, -1, withscores=True)
                elif kind == b"stream":
                    trades = [t for _, e in r.xrange(key) for t in json.loads(e[b"trades"])]
                    out[f"{n}/{name}"] = trades
                else:
                    raise AssertionError(f"unexpected {kind!r} at {name}")
    return out


def flush_all(port: int) -> None:
    with redis.Redis(port=port) as r:
        r.flushall()  # the test's own server (the `server` fixture started it)


async def ingest(pools, settings, *paths: Path, dead: Path, **kw):
    return await run_feed(pools, settings, file_feed(Format.CSV, list(paths), **kw), dead)


async def clean_run(server, pools, settings, lines: list[str], tmp_path: Path) -> dict[str, object]:
    """The stores after one run of ``lines`` on an empty server (which is left empty again)."""
    flush_all(server.port)
    folder = tmp_path / "clean"
    folder.mkdir(exist_ok=True)
    path = write(folder / f"clean-{len(list(folder.iterdir()))}.csv", lines)
    await ingest(pools, settings, path, dead=folder / "dead.jsonl")
    result = stores_of(server.port)
    flush_all(server.port)
    return result


# -- item 2: a source is its content ------------------------------------------------------------


@pytest.mark.parametrize("how", ["copy", "move", "rename"])
async def test_a_copied_moved_or_renamed_file_resumes(server, pools, settings, tmp_path, how) -> None:
    lines = dol_lines(1500)
    expected = await clean_run(server, pools, settings, lines, tmp_path)
    first = write(tmp_path / "day.csv", lines)
    done = await ingest(pools, settings, first, dead=tmp_path / "d.jsonl")
    assert done.stats.trades == 1500
    elsewhere = tmp_path / "archive"
    elsewhere.mkdir()
    target = elsewhere / ("day.csv" if how == "move" else "trades-2025-11-24.csv")
    {"copy": shutil.copy, "move": shutil.move, "rename": shutil.move}[how](first, target)
    again = await ingest(pools, settings, target, dead=tmp_path / "d.jsonl")
    assert (again.stats.trades, again.stats.resumed) == (0, 1500)
    assert again.source == done.source
    assert stores_of(server.port) == expected


@pytest.mark.parametrize("size", [300, 2500])  # under and over 64 KiB before it grows
async def test_a_grown_file_continues_where_it_stopped(server, pools, settings, tmp_path, size) -> None:
    lines = dol_lines(size + 400)
    expected = await clean_run(server, pools, settings, lines, tmp_path)
    path = write(tmp_path / "live.csv", lines[:size])
    assert (path.stat().st_size < 65_536) == (size == 300)
    await ingest(pools, settings, path, dead=tmp_path / "d.jsonl")
    with path.open("a") as fh:
        fh.writelines(lines[size:])
    grown = await ingest(pools, settings, path, dead=tmp_path / "d.jsonl")
    assert (grown.stats.trades, grown.stats.resumed) == (400, size)
    assert stores_of(server.port) == expected


async def test_a_changed_ingested_part_is_refused(server, pools, settings, cli, tmp_path) -> None:
    lines = dol_lines(600)
    path = write(tmp_path / "day.csv", lines)
    await ingest(pools, settings, path, dead=tmp_path / "d.jsonl")
    before = stores_of(server.port)
    lines[300] = lines[300].replace(",d300", ",d300x")  # an edit inside the ingested part
    write(path, lines)
    with pytest.raises(SmartTradeError, match="--reset"):
        await ingest(pools, settings, path, dead=tmp_path / "d.jsonl")
    result = cli.smarttrade("ingest", "--format", "csv", str(path), "--dead-letter", str(tmp_path / "d"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert "day.csv" in line and "--reset" in line and "--source" in line
    assert stores_of(server.port) == before  # nothing applied on top


@pytest.mark.parametrize("edit", ["first-line", "crlf"])
async def test_a_file_edited_in_its_head_is_refused_not_ingested_again(
    server, pools, settings, tmp_path, edit
) -> None:
    lines = dol_lines(600)
    path = write(tmp_path / "day.csv", lines)
    await ingest(pools, settings, path, dead=tmp_path / "d.jsonl")
    before = stores_of(server.port)
    if edit == "first-line":  # inside the first 4 KiB: no record's head matches any more
        lines[0] = lines[0].replace(",d0", ",d0x")
        write(path, lines)
    else:  # the same trades with CRLF endings
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    with pytest.raises(SmartTradeError, match="--reset"):
        await ingest(pools, settings, path, dead=tmp_path / "d.jsonl")
    assert stores_of(server.port) == before  # not every trade a second time


async def test_an_empty_file_is_no_source_for_the_next_one(server, pools, settings, cli, tmp_path) -> None:
    lines = dol_lines(600)
    path = write(tmp_path / "day.csv", lines)
    await ingest(pools, settings, path, dead=tmp_path / "d.jsonl")
    before = stores_of(server.port)
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    assert (
        cli.smarttrade(
            "ingest", "--format", "csv", str(empty), "--dead-letter", str(tmp_path / "e")
        ).returncode
        == 1
    )
    short = write(tmp_path / "short.csv", lines[:300])  # a truncated copy: refused, not a new source
    result = cli.smarttrade("ingest", "--format", "csv", str(short), "--dead-letter", str(tmp_path / "e"))
    assert result.returncode == 1, result.stderr
    assert "shorter than" in result.stderr and "Traceback" not in result.stderr
    assert stores_of(server.port) == before


async def test_source_names_a_source_explicitly(server, pools, settings, tmp_path) -> None:
    lines = dol_lines(400)
    path = write(tmp_path / "a.csv", lines)
    first = await ingest(pools, settings, path, dead=tmp_path / "d.jsonl", name="desk-1")
    assert first.source == "desk-1" and first.stats.trades == 400
    again = await ingest(pools, settings, path, dead=tmp_path / "d.jsonl", name="desk-1")
    assert (again.stats.trades, again.stats.resumed) == (0, 400)


# -- item 3: rejected lines are never done --------------------------------------------------------


def btc_lines(n: int, seed: int = 3) -> list[str]:
    """BTCUSDT trades priced to 0.1: most are off a (wrong) tick of 1."""
    rng = random.Random(seed)
    price = 97_000.0
    out = []
    for i in range(n):
        price = round(price + rng.choice((-0.3, -0.1, 0.1, 0.2, 1.0)), 1)
        qty = rng.randint(1, 5000) / 1000
        side = rng.choice(("buy", "sell"))
        out.append(f"BTCUSDT,{price:.1f},{qty},{side},{T0 + i * 0.7:.3f},b{i}\n")
    return out


def declare(run: str) -> list[str]:
    """How a run declares BTCUSDT: "wrong", a tick coarser than its prices, or "right", as the
    data needs (the same price scale, so only the tick differs)."""
    return ["--symbol-spec", "BTCUSDT:1:3:10" if run == "wrong" else "BTCUSDT:0.1:3"]


def test_rejected_lines_are_ingested_once_the_cause_is_fixed(server, cli, tmp_path) -> None:
    path = write(tmp_path / "btc.csv", btc_lines(3000))
    dead = str(tmp_path / "dead.jsonl")
    args = ["ingest", "--format", "csv", str(path), "--dead-letter", dead, "--json"]
    clean = cli.smarttrade(*args, *declare("right"))
    assert clean.returncode == 0, clean.stderr
    expected = stores_of(server.port)
    assert json.loads(clean.stdout)["trades"] == 3000
    flush_all(server.port)

    wrong = cli.smarttrade(*args, *declare("wrong"))
    assert wrong.returncode == 1, wrong.stderr  # most lines rejected: the run stops and says why
    assert "is not on BTCUSDT's tick of 1" in wrong.stderr and "declaration" in wrong.stderr
    assert json.loads(wrong.stdout)["trades"] > 0  # some prices happen to be whole
    # the fix: the registered declaration is replaced explicitly (a conflicting one is refused)
    refused = cli.smarttrade(*args, *declare("right"))
    assert refused.returncode == 1 and "--replace" in refused.stderr, refused.stderr
    replaced = cli.smarttrade("symbols", "add", declare("right")[1], "--replace")
    assert replaced.returncode == 0, replaced.stderr
    fixed = cli.smarttrade(*args, *declare("right"))
    assert fixed.returncode == 0, fixed.stderr
    summary = json.loads(fixed.stdout)
    assert summary["started_over"] == ["BTCUSDT"] and summary["trades"] == 3000
    assert stores_of(server.port) == expected  # every level, bucket, quote, bar and indicator
    again = json.loads(cli.smarttrade(*args, *declare("right")).stdout)
    assert (again["trades"], again["resumed"], again["started_over"]) == (0, 3000, [])
    assert stores_of(server.port) == expected


# -- item 4: flush and reset never double-count ----------------------------------------------------


def test_reset_starts_the_source_over_after_asking(server, cli, tmp_path) -> None:
    path = write(tmp_path / "day.csv", dol_lines(1200))
    base = ["ingest", "--format", "csv", str(path), "--json"]
    args = [*base, "--dead-letter", str(tmp_path / "d.jsonl")]
    assert cli.smarttrade(*args).returncode == 0
    expected = stores_of(server.port)
    asked = cli.smarttrade(*args, "--reset")  # no terminal to answer: refused, nothing touched
    assert asked.returncode == 1 and "DOL" in asked.stderr and "--yes" in asked.stderr
    bad = cli.smarttrade(*base, "--dead-letter", str(tmp_path), "--reset", "--yes")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == [f"--dead-letter: {tmp_path} is a directory; name a file"]
    assert stores_of(server.port) == expected
    assert json.loads(cli.smarttrade(*args).stdout)["trades"] == 0  # checkpoints intact
    done = cli.smarttrade(*args, "--reset", "--yes")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["trades"] == 1200
    assert stores_of(server.port) == expected  # bars and footprints count every trade once


def test_flushdb_never_takes_the_checkpoints(server, cli, tmp_path) -> None:
    path = write(tmp_path / "day.csv", dol_lines(300))
    args = ["ingest", "--format", "csv", str(path), "--dead-letter", str(tmp_path / "d.jsonl"), "--json"]
    assert cli.smarttrade(*args).returncode == 0
    flushed = cli.smarttrade("flush", "quotes", "--yes", "--flushdb")
    assert flushed.returncode == 0 and "SCAN+UNLINK" in flushed.stdout  # the db holds checkpoints
    assert json.loads(cli.smarttrade(*args).stdout)["trades"] == 0


# -- item 5: a trade stamped in the future poisons nothing -----------------------------------------


async def test_one_future_trade_loses_no_good_trade(server, pools, settings, stores, tmp_path) -> None:
    lines = dol_lines(2400)
    poisoned = [*lines[:1200], f"DOL,5400.0,7,buy,{T0 + 600 + 43_200:.3f},future\n", *lines[1200:]]
    expected = await clean_run(server, pools, settings, lines, tmp_path)
    dead = tmp_path / "dead.jsonl"
    result = await ingest(pools, settings, write(tmp_path / "p.csv", poisoned), dead=dead)
    assert (result.stats.trades, result.rejected) == (2400, 1)
    (letter,) = [json.loads(x) for x in dead.read_text().splitlines()]
    assert letter["line"] == 1202 and "outlier" in letter["reason"]
    assert stores_of(server.port) == expected  # latest quote, footprint, bars: as if it never was
    latest = await stores.quotes.latest("DOL")
    assert latest is not None and latest.timestamp == pytest.approx(T0 + 2399 * 0.5)


async def test_a_real_overnight_gap_keeps_every_trade(server, pools, settings, tmp_path) -> None:
    day1 = dol_lines(500)
    day2 = dol_lines(500, start=500, t0=T0 + 86_400 - 250)  # the next session, 09:00 again
    result = await ingest(pools, settings, write(tmp_path / "two.csv", day1 + day2), dead=tmp_path / "d")
    assert (result.stats.trades, result.rejected) == (1000, 0)


async def test_a_held_trade_is_never_passed_by_a_checkpoint(server, pools, settings, tmp_path) -> None:
    # DOL jumps an hour ahead on line 4, and nothing confirms it before WIN's trades are committed
    win = [f"WIN,{125000 + 5 * (i % 3)},1,buy,{T0 + i:.3f},w{i}\n" for i in range(20)]
    lines = [dol_lines(1)[0], win[0], f"DOL,5300.5,4,buy,{T0 + 3600:.3f},jump\n", *win[1:]]
    path = write(tmp_path / "f.csv", lines)
    norm = Normalizer(DeadLetters(None, "held"), {}, replay=True)
    for item in parse_lines(CsvParser(), read_lines([path])):
        norm.feed(item)
    engine = Engine(pools, settings, "held")
    await engine.load_checkpoints()
    engine.start()
    await engine.feed(norm.builder.take(len(lines) + 1))
    await engine.close()
    assert (engine.checkpoints["DOL"].ordinal, engine.checkpoints["WIN"].ordinal) == (2, 23)
    with path.open("a") as fh:  # the next DOL trade confirms the jump: a resumed run commits both
        fh.write(f"DOL,5301.0,2,sell,{T0 + 3601:.3f},after\n")
    resumed = await run_feed(pools, settings, file_feed(Format.CSV, [path], name="held"), None)
    assert (resumed.stats.trades, resumed.stats.resumed) == (2, 21)


# -- item 7: a wrong file fails with its reason ----------------------------------------------------


def dead_args(tmp_path: Path) -> list[str]:
    return ["--dead-letter", str(tmp_path / "d.jsonl")]


def _fails(result, *parts: str) -> str:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    for part in parts:
        assert part in last, last
    return last


def test_a_wrong_file_fails_with_its_reason_and_fix(server, cli, tmp_path) -> None:
    dead = ["--dead-letter", str(tmp_path / "d.jsonl")]
    binary = tmp_path / "photo.csv"
    binary.write_bytes(random.Random(1).randbytes(200_000))
    _fails(cli.smarttrade("ingest", "--format", "csv", str(binary), *dead), "photo.csv", "--format")
    columns = write(tmp_path / "cols.csv", ["a,b,c\n"] * 50, header=False)
    _fails(cli.smarttrade("ingest", "--format", "csv", str(columns), *dead), "header lacks column(s)")
    b3 = Path(__file__).parent / "data" / "b3_trades.txt"
    _fails(cli.smarttrade("ingest", "--format", "csv", str(b3), *dead), "--format")
    btc = write(tmp_path / "btc.csv", btc_lines(20))
    _fails(
        cli.smarttrade("ingest", "--format", "csv", str(btc), *dead),
        "unknown symbol 'BTCUSDT': declare it, e.g. SMARTTRADE_SYMBOLS=BTCUSDT:TICK:QTY_DECIMALS",
    )
    with redis.Redis(port=server.port) as r:
        assert not any(True for _ in r.scan_iter(match="ingest:checkpoint:*", count=100))


def test_a_mostly_rejected_file_stops_early(server, cli, tmp_path) -> None:
    good = dol_lines(3000)
    lines = [line if i % 3 == 0 else line.replace("DOL,", "DOL,x") for i, line in enumerate(good)]
    path = write(tmp_path / "bad.csv", lines)
    result = cli.smarttrade(
        "ingest", "--format", "csv", str(path), "--dead-letter", str(tmp_path / "d"), "--json"
    )
    _fails(result, "of the first", "price")
    summary = json.loads(result.stdout)
    assert summary["rejected"] < 2000 and summary["failed"]  # stopped before the end
    assert all("…" not in reason for reason in summary["reason_examples"].values())


def test_ingest_json_fields_are_stable(server, cli, tmp_path) -> None:
    path = write(tmp_path / "day.csv", dol_lines(50))
    result = cli.smarttrade(
        "ingest", "--format", "csv", str(path), "--dead-letter", str(tmp_path / "d"), "--json"
    )
    assert result.returncode == 0, result.stderr
    assert list(json.loads(result.stdout)) == [
        "source", "trades", "cancels", "rejected", "reasons", "reason_examples", "skipped", "resumed",
        "started_over", "commits", "skipped_commits", "max_batch", "repaired", "missed_cancels",
        "abandoned", "restarts", "elapsed_s", "failed",
    ]  # fmt: skip


async def test_a_live_trade_ahead_of_the_wall_clock_is_rejected(pools, settings, stores, tmp_path) -> None:
    import time

    from smarttrade.feeds.record import BUY, TradeRecord
    from smarttrade.ingest.live import LiveIngest

    live = LiveIngest(Engine(pools, settings, "live-future"), DeadLetters(tmp_path / "d.jsonl", "live"))
    await live.start()
    now = int(time.time() * 1e6)
    trades = [
        TradeRecord("WIN", 125000, 2, BUY, now, "a"),
        TradeRecord("WIN", 125500, 9, BUY, now + 12 * 3600 * 10**6, "future"),  # a clock gone wrong
        TradeRecord("WIN", 125005, 1, BUY, now + 1000, "b"),
    ]
    accepted = [await live.submit(t) for t in trades]
    await live.close()
    assert accepted == [True, False, True]
    latest = await stores.quotes.latest("WIN")
    assert latest is not None and latest.price == 125005
    assert "ahead of the clock" in (tmp_path / "d.jsonl").read_text()


async def test_a_copy_of_a_run_stopped_early_resumes(server, pools, settings, tmp_path) -> None:
    lines = dol_lines(10_000)
    expected = await clean_run(server, pools, settings, lines, tmp_path)
    path = write(tmp_path / "day.csv", lines)
    feed = file_feed(Format.CSV, [path])
    stopped = await run_feed(pools, settings, feed, tmp_path / "d.jsonl", duration=0)  # after a chunk
    assert 0 < stopped.stats.trades < 10_000
    copy = tmp_path / "copy-of-day.csv"
    shutil.copy(path, copy)
    rest = await ingest(pools, settings, copy, dead=tmp_path / "d.jsonl")
    assert rest.stats.trades == 10_000 - stopped.stats.trades
    assert rest.source == stopped.source
    assert stores_of(server.port) == expected
