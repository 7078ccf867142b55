"""Every source format: what each line becomes, and a fuzz that every line is either accepted or
dead-lettered, never an exception."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smarttrade.feeds.b3 import B3Parser
from smarttrade.feeds.chunk import SIDE_DEFAULT, SIDE_QUOTE, SIDE_SOURCE, SIDE_TICK
from smarttrade.feeds.files import Line, LineParser, parse_lines, read_lines
from smarttrade.feeds.generic import CsvParser, JsonLinesParser
from smarttrade.feeds.mt5 import Mt5Parser
from smarttrade.feeds.record import BUY, SELL, UNKNOWN, TradeRecord
from smarttrade.feeds.tardis import TardisParser
from smarttrade.ingest.deadletter import DeadLetters
from smarttrade.ingest.normalize import Normalizer, SymbolState, classify
from smarttrade.symbols import register

DATA = Path(__file__).parent / "data"
register("BTCUSDT:0.1:6")


def records(parser: LineParser, path: Path) -> tuple[list[TradeRecord], list[tuple[int, str]]]:
    good, bad = [], []
    for item in parse_lines(parser, read_lines([path])):
        if item.error:
            bad.append((item.line.number, item.error))
        elif item.record:
            good.append(item.record)
    return good, bad


def sao_paulo_us(text: str) -> int:
    """A Sao Paulo wall time (UTC-3 since 2019) as Unix microseconds."""
    moment = datetime.fromisoformat(text + "-03:00")
    return int(moment.timestamp() * 1_000_000)


def test_b3_layout() -> None:
    good, bad = records(B3Parser(), DATA / "b3_trades.txt")
    first = good[0]
    assert (first.symbol, first.price, first.qty, first.side, first.trade_id) == (
        "WINZ25",
        125000,
        5,
        UNKNOWN,
        "2025-11-24/10",
    )
    assert first.time_us == sao_paulo_us("2025-11-24T09:00:00.123")  # 8 digits before 10:00
    wdo = good[1]
    assert (wdo.symbol, wdo.price, wdo.qty) == ("WDOF26", 5234500, 10)  # DOL/WDO scale 1000
    cancel = [r for r in good if r.cancel]
    assert [(c.trade_id, c.price, c.qty) for c in cancel] == [("2025-11-24/20", 125005, 3)]
    assert good[-1].time_us == sao_paulo_us("2025-11-24T10:00:00.000")  # 9 digits
    assert bad == [
        (9, "PrecoNegocio: 'abc' is not a number"),
        (10, "QuantidadeNegociada: must be positive (got 0)"),
        (11, "AcaoAtualizacao: '9' is neither 0 (new) nor 2 (cancel)"),
    ]  # line 12, XYZZ25, is an instrument we do not track: skipped, not rejected


def test_b3_only_skips_other_instruments() -> None:
    good, bad = records(B3Parser(only={"WDOF26"}), DATA / "b3_trades.txt")
    assert {r.symbol for r in good} == {"WDOF26"}
    assert bad == []


def test_generic_csv_and_jsonl() -> None:
    good, bad = records(CsvParser(), DATA / "trades.csv")
    assert [(r.symbol, r.price, r.qty, r.side) for r in good] == [
        ("DOL", 5234500, 10, BUY),
        ("DOL", 5234500, 5, UNKNOWN),
        ("DOL", 5234000, 3, UNKNOWN),
        ("WDO", 5235000, 4, SELL),
    ]
    assert good[1].bid == 5234000 and good[1].ask == 5234500
    assert good[3].time_us == int(datetime(2025, 11, 24, 12, 0, 1, 500000, tzinfo=UTC).timestamp() * 1e6)
    assert [n for n, _ in bad] == [5, 7]
    good, bad = records(JsonLinesParser(), DATA / "trades.jsonl")
    assert [(r.price, r.qty, r.side, r.time_us) for r in good] == [
        (125000, 2, BUY, 1763985600_500000),
        (125005, 1, SELL, 1763985600_750000),
        (125005, 1, UNKNOWN, 1763985601_000000),
    ]
    assert bad == [
        (4, "broken JSON: JSON is malformed: invalid character (byte 4)"),
        (5, "price: 125003 is not on WIN's tick of 5"),
    ]


def test_mt5_ticks() -> None:
    good, bad = records(Mt5Parser("WINZ25"), DATA / "WINZ25_mt5.tsv")
    assert [(r.price, r.qty, r.side, r.bid, r.ask) for r in good] == [
        (125005, 3, BUY, 125000, 125005),  # flags 56 = 32 + 16 + 8: buy
        (125000, 2, SELL, 125000, 125005),  # 88 = 64 + 16 + 8: sell
        (125005, 1, UNKNOWN, 125000, 125005),  # 24: no side, classified later
        (125005, 4, UNKNOWN, 125005, 125010),  # after a quote row moved bid/ask
    ]
    assert good[0].time_us == sao_paulo_us("2025-11-24T09:00:00.200")
    assert [n for n, _ in bad] == [8]


def test_tardis_keeps_fractional_amounts_exact() -> None:
    good, bad = records(TardisParser(), DATA / "tardis_trades.csv")
    assert [(r.price, r.qty, r.side, r.time_us) for r in good] == [
        (971234, 1234, BUY, 1763985600123456),  # 0.001234 BTC at 6 decimals
        (971234, 100000, SELL, 1763985600223456),
        (971234, 1, BUY, 1763985600323456),
    ]
    assert bad == [
        (5, "price: 97123.45 has more decimals than BTCUSDT's price scale"),
        (6, "amount: 0.0000001 is not a quantity of BTCUSDT (6 decimals)"),
    ]


def rec(price: int, side: int = UNKNOWN, bid: int = 0, ask: int = 0) -> TradeRecord:
    return TradeRecord("WIN", price, 1, side, 1, "", bid, ask)


def test_classification_rules() -> None:
    state = SymbolState()
    assert classify(rec(100, SELL), state) == (SELL, SIDE_SOURCE)
    assert classify(rec(100), state) == (BUY, SIDE_DEFAULT)  # first trade, nothing to go by
    assert classify(rec(105, bid=100, ask=105), state) == (BUY, SIDE_QUOTE)  # at the ask
    assert classify(rec(100, bid=100, ask=105), state) == (SELL, SIDE_QUOTE)  # at the bid
    assert classify(rec(104, bid=100, ask=110), state) == (SELL, SIDE_QUOTE)  # nearer the bid
    state.last_price, state.last_side = 105, SELL
    # at the midpoint the quote says nothing: the tick rule, unchanged price, keeps the last side
    assert classify(rec(105, bid=100, ask=110), state) == (SELL, SIDE_TICK)
    assert classify(rec(110), state) == (BUY, SIDE_TICK)
    assert classify(rec(95), state) == (SELL, SIDE_TICK)


class Counting(LineParser):
    """Wraps a parser and records which lines it passed over (returned None for)."""

    def __init__(self, inner: LineParser) -> None:
        self.inner = inner
        self.passed: list[str] = []

    def parse(self, text: str, line: Line) -> TradeRecord | None:
        result = self.inner.parse(text, line)
        if result is None:
            self.passed.append(text)
        return result


def normalize(parser: LineParser, lines: list[str], tmp_path: Path) -> tuple[int, int, list[str]]:
    path = tmp_path / "input.txt"
    path.write_bytes("\n".join(lines).encode("utf-8", errors="surrogateescape") + b"\n")
    dead = DeadLetters(tmp_path / "dead.jsonl", "fuzz")
    norm = Normalizer(dead, {})
    counting = Counting(parser)
    last = 0
    for item in parse_lines(counting, read_lines([path])):
        norm.feed(item)
        last = item.line.ordinal
    accepted = len(norm.builder)
    norm.builder.take(last)  # the columns must hold every accepted value (int64, no overflow)
    dead.close()
    return accepted, dead.count, counting.passed


PARSERS: dict[str, Callable[[], LineParser]] = {
    "csv": CsvParser,
    "jsonl": JsonLinesParser,
    "b3": B3Parser,
    "mt5": lambda: Mt5Parser("WIN"),
    "tardis": TardisParser,
}
SAMPLES = {
    name: (DATA / file).read_text().splitlines()
    for name, file in [
        ("csv", "trades.csv"),
        ("jsonl", "trades.jsonl"),
        ("b3", "b3_trades.txt"),
        ("mt5", "WINZ25_mt5.tsv"),
        ("tardis", "tardis_trades.csv"),
    ]
}


EDGE_NUMBERS = [
    "1e999999",
    "1e30",
    "1E18",
    "12345678²",
    "-0",
    "NaN",
    "Infinity",
    "0x10",
    "\uff11\uff12",  # fullwidth digits
    "9" * 40,
    "0.0",
]


def _mutations(line: str) -> st.SearchStrategy[str]:
    numbers = list(re.finditer(r"\d+(?:[.,]\d+)?", line))
    return st.one_of(
        st.builds(
            lambda m, v: line[: m.start()] + v + line[m.end() :],
            st.sampled_from(numbers) if numbers else st.nothing(),
            st.sampled_from(EDGE_NUMBERS),
        ),
        st.just(line),
        st.text(max_size=120),
        st.builds(lambda i, s: line[:i] + s + line[i:], st.integers(0, len(line)), st.text(max_size=8)),
        st.builds(lambda i, j: line[:i] + line[j:], st.integers(0, len(line)), st.integers(0, len(line))),
        st.integers(4000, 5000).map(lambda n: line + "x" * n),  # oversized
    )


@pytest.mark.parametrize("fmt", list(PARSERS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_every_line_is_accepted_or_dead_lettered(fmt: str, data: st.DataObject, tmp_path: Path) -> None:
    sample = SAMPLES[fmt]
    lines = [sample[0]] + [data.draw(_mutations(data.draw(st.sampled_from(sample[1:])))) for _ in range(12)]
    lines = [ln.replace("\n", " ").replace("\r", " ") for ln in lines]
    accepted, rejected, passed = normalize(PARSERS[fmt](), lines, tmp_path)
    nonblank = [ln for ln in lines if ln.strip()]
    assert accepted + rejected + len(passed) == len(nonblank)
    # the only lines passed over are headers and, in MT5 exports, quote rows (no LAST)
    for text in passed:
        header = text == sample[0] or text.startswith(("symbol,", "exchange,", "DataReferencia", "<"))
        mt5_quote = fmt == "mt5" and len(text.split("\t")) == 7 and not text.split("\t")[4].strip()
        b3_other = fmt == "b3" and len(text.split(";")) == 11  # an instrument we do not track
        assert header or mt5_quote or b3_other, text
    (tmp_path / "dead.jsonl").unlink(missing_ok=True)
