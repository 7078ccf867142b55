"""Instruments are one fact, with their own calendar and units (issue 9, items 8-11): built-in B3
contracts cannot be redefined, declarations are registered in Redis for every later command,
24-hour markets get sessions and indicators, VWAP restarts after a session, and everything a user
reads is in the instrument's own units. Through the CLI, against a real server."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import CliRunner
from tests.test_feeds import DATA, sao_paulo_us

DOCS = Path(__file__).parent.parent / "docs"


def utc_s(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def write_csv(path: Path, rows: list[tuple[str, str, str, str, float]]) -> Path:
    """rows: (symbol, price, volume, side, unix seconds)."""
    lines = ["symbol,price,volume,side,time,trade_id"]
    lines += [f"{sym},{price},{vol},{side},{t:.6f},t{i}" for i, (sym, price, vol, side, t) in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def ok(result) -> None:  # type: ignore[no-untyped-def]
    assert result.returncode == 0, (result.args, result.stdout[-2000:], result.stderr[-2000:])
    assert "Traceback" not in result.stderr


def one_line(result) -> str:  # type: ignore[no-untyped-def]
    assert result.returncode != 0, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def ingest(cli: CliRunner, path: Path, tmp: Path, *extra: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return cli.smarttrade(
        "ingest", "--format", "csv", str(path), "--dead-letter", str(tmp / "dead.jsonl"), *extra, env=env
    )


# -- item 11: one fact, registered in Redis -------------------------------------------------------


def test_builtin_contract_cannot_be_redefined(cli: CliRunner, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", [("WIN", "125000", "1", "buy", utc_s("2025-11-24T13:00:00"))])
    line = one_line(ingest(cli, path, tmp_path, env={"SMARTTRADE_SYMBOLS": "WIN:5:0:10"}))
    assert "SMARTTRADE_SYMBOLS" in line and "WIN is a built-in B3 contract" in line
    flag = ingest(cli, path, tmp_path, "--symbol-spec", "WINZ25:5:0")
    assert flag.returncode == 2 and "built-in B3 contract" in flag.stderr
    assert cli.redis("-n", "2", "--scan", "--pattern", "footprint:*") == ""  # nothing written
    # the built-in one is used as it is: footprint:WIN:125000, never 1250000
    ok(ingest(cli, path, tmp_path))
    assert cli.redis("-n", "2", "--scan", "--pattern", "footprint:*") == "footprint:WIN:125000"


def test_a_declared_instrument_is_registered_for_later_commands(cli: CliRunner, tmp_path: Path) -> None:
    t0 = utc_s("2025-11-24T04:00:00")
    path = write_csv(
        tmp_path / "btc.csv",
        [("BTCUSDT", "97123.41", "0.5", "buy", t0), ("BTCUSDT", "97123.45", "0.00012", "sell", t0 + 1)],
    )
    first = ingest(cli, path, tmp_path, "--symbol-spec", "BTCUSDT:0.01:5")
    ok(first)
    assert "registered BTCUSDT:0.01:5:100@UTC" in first.stderr
    assert cli.redis("-n", "0", "HGET", "instruments:registry", "BTCUSDT") == "BTCUSDT:0.01:5:100@UTC"
    assert cli.redis("-n", "0", "TTL", "instruments:registry") == "-1"  # permanent on purpose
    # a later command, with no declaration, knows it
    shown = cli.smarttrade("footprint", "BTCUSDT", "--json")
    ok(shown)
    assert json.loads(shown.stdout)[-1]["footprint"]["volume"] == 0.50012
    listed = json.loads(cli.smarttrade("symbols", "--json").stdout)
    mine = [r for r in listed if r["root"] == "BTCUSDT"]
    assert mine == [
        {
            "root": "BTCUSDT",
            "declaration": "BTCUSDT:0.01:5:100@UTC",
            "tick": "0.01",
            "price_scale": 100,
            "qty_decimals": 5,
            "calendar": "UTC, 24 h",
            "source": "registered",
        }
    ]
    assert {r["root"] for r in listed if r["source"] == "built-in"} == {"DOL", "WDO", "WIN", "IND"}
    table = cli.smarttrade("symbols")
    ok(table)
    assert "BTCUSDT" in table.stdout and "registered" in table.stdout
    # the same declaration again is fine; a different one is refused, with the way to replace it
    ok(ingest(cli, path, tmp_path, "--symbol-spec", "BTCUSDT:0.01:5"))
    line = one_line(ingest(cli, path, tmp_path, env={"SMARTTRADE_SYMBOLS": "BTCUSDT:0.1:6"}))
    assert "conflicts with the registered BTCUSDT:0.01:5:100@UTC" in line
    assert "smarttrade symbols add BTCUSDT:0.1:6:10@UTC --replace" in line
    refused = cli.smarttrade("symbols", "add", "BTCUSDT:0.1:6")
    assert refused.returncode == 1 and "--replace" in one_line(refused)
    ok(cli.smarttrade("symbols", "add", "BTCUSDT:0.1:6", "--replace"))
    assert cli.redis("-n", "0", "HGET", "instruments:registry", "BTCUSDT") == "BTCUSDT:0.1:6:10@UTC"
    builtin = cli.smarttrade("symbols", "add", "DOL:1:0")
    assert "DOL is a built-in B3 contract" in one_line(builtin)


def test_conflicting_declarations_are_refused(cli: CliRunner, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", [("ETH", "3000.1", "1", "buy", utc_s("2025-11-24T04:00:00"))])
    both = ingest(cli, path, tmp_path, "--symbol-spec", "ETH:0.1:4", env={"SMARTTRADE_SYMBOLS": "ETH:0.01:4"})
    assert "conflicts with ETH:0.1:4:10@UTC" in one_line(both)
    twice = ingest(cli, path, tmp_path, env={"SMARTTRADE_SYMBOLS": "ETH:0.1:4,ETH:0.01:4"})
    assert "SMARTTRADE_SYMBOLS" in one_line(twice) and "conflicts" in twice.stderr
    assert cli.redis("-n", "0", "EXISTS", "instruments:registry") == "0"


def binance_like(path: Path) -> Path:
    """BTCUSDT as major venues trade it: a 0.01 tick, quantities with up to 5 decimals."""
    t0 = 1_763_985_600_000_000
    prices = ["97123.41", "97123.45", "97124.02", "97123.99", "97125.5", "97123.41"]
    amounts = ["0.00012", "0.5", "1.23456", "0.031", "2", "0.00007"]
    rows = ["exchange,symbol,timestamp,local_timestamp,id,side,price,amount"]
    for i, (p, a) in enumerate(zip(prices, amounts, strict=True)):
        rows.append(f"binance,BTCUSDT,{t0 + i * 1000},{t0 + i * 1000 + 5},{i},buy,{p},{a}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_guess_proposes_a_declaration_and_the_docs_example_fits(cli: CliRunner, tmp_path: Path) -> None:
    sample = binance_like(tmp_path / "binance.csv")
    shown = cli.smarttrade("symbols", "guess", str(sample), "--format", "tardis", "--json")
    ok(shown)
    (btc,) = json.loads(shown.stdout)["symbols"]
    assert (btc["symbol"], btc["tick"], btc["qty_decimals"], btc["status"]) == ("BTCUSDT", "0.01", 5, "new")
    assert btc["declaration"] == "BTCUSDT:0.01:5:100@UTC"
    table = cli.smarttrade("symbols", "guess", str(sample), "--format", "tardis")
    ok(table)
    assert "smarttrade symbols add BTCUSDT:0.01:5:100@UTC" in table.stderr
    # the docs' and README's example declarations are the guess for data of their kind
    texts = "".join(p.read_text() for p in [*DOCS.glob("*.md"), DOCS.parent / "README.md"])
    examples = set(re.findall(r"BTCUSDT:[0-9.]+:[0-9]+(?![0-9:])", texts))  # not the canonical forms
    assert examples == {"BTCUSDT:0.01:5"}, examples
    # a B3 file: its contracts are built in
    b3 = json.loads(
        cli.smarttrade("symbols", "guess", str(DATA / "b3_trades.txt"), "--format", "b3", "--json").stdout
    )
    win = next(g for g in b3["symbols"] if g["symbol"] == "WINZ25")
    assert (win["tick"], win["qty_decimals"], win["status"]) == ("5", 0, "built-in")
    # nothing readable: one line, exit 1
    junk = tmp_path / "junk.csv"
    junk.write_text("a,b\n1,2\n")
    assert "no trades read as csv" in one_line(
        cli.smarttrade("symbols", "guess", str(junk), "--format", "csv")
    )


# -- item 8: 24-hour markets and any session name ------------------------------------------------


def minute_rows(
    symbol: str, start: float, minutes: int, base: int = 97_000
) -> list[tuple[str, str, str, str, float]]:
    rows = []
    for m in range(minutes):
        price = base + (m * 7919) % 23 - 11  # wanders on whole units
        rows.append((symbol, f"{price}", "0.1", "buy" if m % 3 else "sell", start + m * 60 + 1))
    return rows


def test_a_24_hour_market_gets_sessions_and_indicators(cli: CliRunner, tmp_path: Path) -> None:
    """04:00-04:40 UTC is 01:00 in Sao Paulo, off-session for B3: a crypto pair declared without
    a calendar trades 24 h in UTC, so its bars are in session `day` and feed the indicators."""
    path = write_csv(tmp_path / "btc.csv", minute_rows("BTCUSDT", utc_s("2025-11-24T04:00:00"), 40))
    env = {"SMARTTRADE_SYMBOLS": "BTCUSDT:0.01:5"}  # declared the same everywhere: only the calendar differs
    ok(ingest(cli, path, tmp_path, env=env))
    shown = cli.smarttrade("indicators", "BTCUSDT", "--json", env=env)
    ok(shown)
    closed = json.loads(shown.stdout)["closed"]
    assert {"rsi_14_1m", "sma_20_1m", "ema_20_1m", "atr_14_1m", "rsi", "vwap"} <= set(closed)
    bars = json.loads(cli.smarttrade("footprint", "BTCUSDT", "--bars", "3", "--json").stdout)
    assert {b["session"] for b in bars} == {"2025-11-24/day"}
    ladder = cli.smarttrade("footprint", "BTCUSDT")
    ok(ladder)
    assert "bar 2025-11-24 04:39:00" in ladder.stdout  # shown in the instrument's zone


def test_session_days_follow_the_zone_and_any_name_gets_indicators(cli: CliRunner, tmp_path: Path) -> None:
    """Tokyo is UTC+9: 14:50 UTC on the 24th is 23:50 on the 24th there, 15:10 UTC is 00:10 on the
    25th; a session called `night` ending at 24:00 gets indicators like any other."""
    spec = "NK:1:0@Asia/Tokyo:morning=00:00-12:00+night=12:00-24:00"
    rows = minute_rows("NK", utc_s("2025-11-24T14:30:00"), 40, base=38_000)
    path = write_csv(tmp_path / "nk.csv", [(s, p, "1", side, t) for s, p, _, side, t in rows])
    ok(ingest(cli, path, tmp_path, "--symbol-spec", spec))
    bars = json.loads(cli.smarttrade("footprint", "NK", "--bars", "40", "--json").stdout)
    sessions = [b["session"] for b in bars]
    assert sessions[0] == "2025-11-24/night" and sessions[-1] == "2025-11-25/morning"
    assert {"rsi_14", "sma_20"} <= {k for b in bars for k in b}  # `night` bars carry indicators
    # cumulative delta starts over on the new local day
    first_morning = next(b for b in bars if b["session"] == "2025-11-25/morning")
    assert first_morning["cum_delta"] == first_morning["delta"]


def test_b3_after_hours_stays_apart(cli: CliRunner, tmp_path: Path) -> None:
    """B3's contracts keep SMARTTRADE_SESSIONS in America/Sao_Paulo: after-hours bars are their own,
    with no indicators (``/apart``)."""
    rows = minute_rows("WIN", sao_paulo_us("2025-11-24T18:30:00") / 1e6, 40, base=125_000)
    path = write_csv(
        tmp_path / "win.csv", [(s, str(int(p) // 5 * 5), "1", side, t) for s, p, _, side, t in rows]
    )
    ok(ingest(cli, path, tmp_path))
    bars = json.loads(cli.smarttrade("footprint", "WIN", "--bars", "40", "--json").stdout)
    assert {b["session"] for b in bars} == {"2025-11-24/after"}
    assert not any("rsi_14" in b for b in bars)


# -- item 9: VWAP restarts whichever comes first ---------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second"),
    [("17:00:00", "18:27:00"), ("08:00:00", "09:30:00")],
    ids=["session-then-off", "off-then-session"],
)
def test_vwap_restarts_between_a_session_and_off_session_time(
    cli: CliRunner, tmp_path: Path, first: str, second: str
) -> None:
    """18:25-18:30 is off-session between B3's regular and after-hours sessions; before 09:00 too."""
    rows = [
        ("WIN", "125000", "10", "buy", sao_paulo_us(f"2025-11-24T{first}") / 1e6),
        ("WIN", "130000", "1", "buy", sao_paulo_us(f"2025-11-24T{second}") / 1e6),
    ]
    ok(ingest(cli, write_csv(tmp_path / "t.csv", rows), tmp_path))
    vwap = json.loads(cli.redis("-n", "3", "GET", "calc:WIN:vwap"))
    assert vwap["value"] == 130000.0  # the second period's own trades only


# -- item 10: units at the edges ------------------------------------------------------------------


def test_volumes_read_in_the_instruments_own_units(cli: CliRunner, tmp_path: Path) -> None:
    t0 = utc_s("2025-11-24T04:00:05")
    rows = [
        ("BTCUSDT", "97123.41", "1.23456", "buy", t0),
        ("BTCUSDT", "97123.42", "0.5", "buy", t0 + 1),
        ("BTCUSDT", "97123.43", "0.00012", "buy", t0 + 2),
        ("BTCUSDT", "97123.41", "0.1", "sell", t0 + 3),
    ]
    path = write_csv(tmp_path / "btc.csv", rows)
    ok(ingest(cli, path, tmp_path, "--symbol-spec", "BTCUSDT:0.01:5"))
    start = int(t0) // 60 * 60
    bar = dict(
        zip(*[iter(cli.redis("-n", "1", "HGETALL", f"bar:BTCUSDT:1m:{start}").split("\n"))] * 2, strict=True)
    )
    assert (bar["volume"], bar["buy"], bar["sell"], bar["delta"]) == ("1.83468", "1.73468", "0.1", "1.63468")
    assert bar["cum_delta"] == "1.63468"
    fp = cli.redis("-n", "2", "HGET", f"fpbar:BTCUSDT:1m:{start}", "b:9712341")
    assert fp == "1.23456"
    env = {"SMARTTRADE_IMBALANCE_MIN_VOLUME": "0.5"}  # BTC, not 0.5 of a quantity unit
    (view,) = json.loads(cli.smarttrade("footprint", "BTCUSDT", "--json", env=env).stdout)
    levels = {lv["price"]: lv for lv in view["footprint"]["levels"]}
    assert (levels[97123.41]["ask"], levels[97123.41]["bid"], levels[97123.41]["delta"]) == (
        1.23456,
        0.1,
        1.13456,
    )
    assert view["footprint"]["volume"] == 1.83468
    # 1.23456 and 0.5 BTC reach the minimum; 0.00012 BTC does not (it did as 12 raw units)
    assert [levels[p]["buy_imbalance"] for p in (97123.41, 97123.42, 97123.43)] == [True, True, False]
    ladder = cli.smarttrade("footprint", "BTCUSDT", env=env)
    ok(ladder)
    assert "volume 1.83468" in ladder.stdout and "1.23456" in ladder.stdout and "+1.13456" in ladder.stdout
    assert "123456" not in ladder.stdout.replace("1.23456", "")
    bad = cli.smarttrade("footprint", "BTCUSDT", env={"SMARTTRADE_IMBALANCE_MIN_VOLUME": "-1"})
    assert "SMARTTRADE_IMBALANCE_MIN_VOLUME" in one_line(bad)


def test_a_role_without_access_to_the_registry_still_connects(cli: CliRunner) -> None:
    """The backup and exporter roles' ACLs do not reach instruments:registry: loading it at
    connect must not lock them out."""
    cli.redis("ACL", "SETUSER", "noinstruments", "on", ">pw-test", "~ops:*", "+@all")
    try:
        url = cli.server.url.replace("redis://", "redis://noinstruments:pw-test@")
        ok(cli.smarttrade("status", "--json", env={"REDIS_URL": url}))
    finally:
        cli.redis("ACL", "DELUSER", "noinstruments")


async def test_a_late_cancel_takes_exact_fractional_volume_out_of_a_closed_bar(
    server, pools, settings
) -> None:
    """A cancel for a bar already closed is applied as an increment inside the commit: for a
    fractional instrument the bar's fields stay exact decimal text (HINCRQTYEX), never floats."""
    import numpy as np
    import redis

    from smarttrade.feeds.chunk import SIDE_SOURCE, Chunk
    from smarttrade.ingest.run import ChunkFeed, run_feed
    from smarttrade.symbols import declare, parse_spec

    declare(parse_spec("LATEX:0.5:3"))
    t0 = int(utc_s("2025-11-24T04:00:00"))

    def chunk(ordinal: int, t: int, qty: int, cancel: bool) -> Chunk:
        return Chunk(
            symbols=["LATEX"],
            code=np.zeros(1, dtype=np.int16),
            price=np.array([2000], dtype=np.int64),  # 1000.0 in the scale of 2 (tick 0.5)
            qty=np.array([qty], dtype=np.int64),  # units of 0.001
            side=np.array([1], dtype=np.int8),
            side_src=np.full(1, SIDE_SOURCE, dtype=np.int8),
            time_us=np.array([t * 1_000_000]),
            bid=np.zeros(1, dtype=np.int64),
            ask=np.zeros(1, dtype=np.int64),
            cancel=np.array([cancel]),
            ordinal=np.array([ordinal], dtype=np.int64),
            end_ordinal=ordinal,
        )

    def chunks():  # type: ignore[no-untyped-def]
        yield chunk(1, t0 + 5, 1_234, False)  # 1.234 in bar t0
        yield chunk(2, t0 + 6, 100, False)  # 0.1 in bar t0
        yield chunk(3, t0 + 65, 7, False)  # the next bar: t0's closes
        yield chunk(4, t0 + 6, 100, True)  # cancels the 0.1 of the closed bar (a cancel has its time)

    await run_feed(pools, settings, ChunkFeed(chunks, "late-cancel"), None)
    bars = redis.Redis(port=server.port, db=1, decode_responses=True)
    bar = bars.hgetall(f"bar:LATEX:1m:{t0}")
    assert (bar["volume"], bar["buy"], bar["delta"], bar["closed"]) == ("1.234", "1.234", "1.234", "1")
    fps = redis.Redis(port=server.port, db=2, decode_responses=True)
    assert fps.hget(f"fpbar:LATEX:1m:{t0}", "b:2000") == "1.234"
    bars.close()
    fps.close()


def test_a_vwap_saved_by_the_previous_version_carries_on() -> None:
    """The per-session key changed encoding (it now orders off-session time too): a checkpoint
    saved before the change continues its session's VWAP instead of starting it over."""
    import numpy as np

    from smarttrade.analytics.bars import SymbolAnalytics
    from smarttrade.analytics.calendar import calendar_for
    from smarttrade.symbols import BUILTIN, DEFAULT_SESSIONS

    spec = BUILTIN["WIN"]
    calendar = calendar_for(spec, DEFAULT_SESSIONS)
    analytics = SymbolAnalytics("WIN", spec, calendar, {"1m": 60}, (1, 2, 3), 1800)
    t = np.array([sao_paulo_us("2025-11-24T10:00:00") // 1_000_000])
    _, day, index, began = calendar.locate(t)
    old_key = int(day[0]) * 16 + int(index[0]) + 1  # the old encoding of (day, regular)
    analytics.load({"frames": {}, "vwap": ["2025-11-24/regular", 125_000 * 10, 10, old_key]})
    ops: list = []
    analytics._vwap(np.array([130_000]), np.array([10]), day, index, began, np.array([False]), ops, int(t[0]))
    assert json.loads(ops[-1][3][0])["value"] == 127_500.0
