"""The columnar commit text (ingest/rowtext.py) writes exactly what per-value formatting writes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from smarttrade.ingest import rowtext
from smarttrade.ingest.commit import Layout, SymbolSlice, build_commit, qty_text
from smarttrade.redis.scripts import COMMIT
from smarttrade.symbols import spec_for

EDGES = [0, 1, 9, 10, 99, 100, 101, 999_999, 1_000_000, 1_764_000_123, 2**53, -1, -10, -(2**53)]


def texts(block: rowtext.Block) -> list[str]:
    if isinstance(block, list):  # a few rows: their bytes
        return [row.decode() for row in block]
    return [bytes(row[row != 0]).decode() for row in block]


def test_integers_match_str() -> None:
    values = np.array(EDGES + list(range(-120, 120)), dtype=np.int64)
    assert texts(rowtext.integers(values)) == [str(v) for v in values.tolist()]
    assert texts(rowtext.integers(values[:10])) == [str(v) for v in values[:10].tolist()]  # few rows
    assert texts(rowtext.integers(np.array([7, 7], dtype=np.int64))) == ["7", "7"]


def test_fraction_drops_trailing_zeros_and_zero_itself() -> None:
    values = np.array([0, 1, 10, 500_000, 123_000, 120_450, 999_999], dtype=np.int64)
    expected = ["", ".000001", ".00001", ".5", ".123", ".12045", ".999999"]
    assert texts(rowtext.fraction(values, 6)) == expected  # few rows: a string per value
    assert texts(rowtext.fraction(np.repeat(values, 20), 6)) == list(np.repeat(expected, 20))  # numpy


def test_quantity_matches_qty_text() -> None:
    values = np.array([*EDGES[:-1], 12_345, 100_000, 100_001, -123_450], dtype=np.int64)
    for decimals in (0, 1, 5, 8):
        for column in (values, np.tile(values, 10)):  # a few rows, and many
            assert texts(rowtext.quantity(column, decimals)) == [
                qty_text(v, decimals) for v in column.tolist()
            ]


def test_join_orders_rows_and_gives_offsets() -> None:
    rows = rowtext.matrix(3, [b"<", rowtext.integers(np.array([5, 60, 700])), b">"])
    text, offsets = rowtext.join(rows, np.array([2, 0, 1]))
    assert text == b"<700><5><60>" and offsets == [0, 5, 8, 12]
    assert rowtext.split(text, offsets, strip=1) == [b"<700", b"<5", b"<60"]


@pytest.mark.parametrize("n", [30, 300])  # a few rows (bytes per row) and many (numpy)
def test_commit_text_is_the_per_trade_formatting(n: int) -> None:
    """Buckets, the whole trades array, quotes and cancels, for a slice with late trades, µs
    stamps and cancels, against the obvious f-string per trade."""
    rng = np.random.default_rng(5)
    spec = spec_for("DOL")
    t0 = 1_764_000_000
    secs = t0 + rng.integers(0, 20, n)  # out of order: late trades
    us = np.where(rng.random(n) < 0.5, rng.integers(0, 1000, n) * 1000, rng.integers(0, 10**6, n))
    price = (5000 + rng.integers(-10, 10, n)) * spec.tick_units
    qty = rng.geometric(0.3, n).astype(np.int64)
    side = np.where(rng.random(n) < 0.5, 1, -1).astype(np.int8)
    cancel = rng.random(n) < 0.1
    s = SymbolSlice(
        "DOL",
        price=price,
        qty=qty,
        side=side,
        side_src=np.zeros(n, dtype=np.int8),
        time_us=secs * 1_000_000 + us,
        bid=price - spec.tick_units,
        ask=np.where(rng.random(n) < 0.3, 0, price + spec.tick_units),
        cancel=cancel,
        ids=np.arange(1, n + 1, dtype=np.int64),
    )
    c = build_commit(s, spec, "test", 1, n, Layout("0 1 2", 60, 300, 600, 86_400))

    def item(i: int) -> str:
        frac = int(us[i])
        ftext = "." + f"{frac:06d}".rstrip("0") if frac else ""
        side_text = '"buy"' if side[i] > 0 else '"sell"'
        return (
            f'{{"price":{spec.price_text(int(price[i]))},"volume":{int(qty[i])},'
            f'"side":{side_text},"time":{int(secs[i])}{ftext}}}'
        )

    live = [i for i in np.argsort(secs, kind="stable").tolist() if not cancel[i]]
    by_second: dict[int, list[int]] = {}
    for i in live:
        by_second.setdefault(int(secs[i]), []).append(i)
    argv = dict(zip(COMMIT.argv, c.args, strict=False))
    assert json.loads(argv["trades"]) == json.loads("[" + ",".join(item(i) for i in live) + "]")
    assert argv["trades"] == ("[" + ",".join(item(i) for i in live) + "]").encode()
    assert argv["stream_ids"] == ",".join(str(i + 1) for i in live).encode()
    nq, nb, nl, nc, _ = (int(x) for x in argv["sizes"].split())
    assert nq == nb == len(by_second) and nc == int(cancel.sum())
    rest = c.args[len(COMMIT.argv) :]
    quotes, buckets = rest[: 2 * nq], rest[2 * nq : 2 * nq + nb]
    for (second, rows), bucket, quote, stamp in zip(
        by_second.items(), buckets, quotes[0::2], quotes[1::2], strict=True
    ):
        assert bucket == ('{"symbol":"DOL","trades":[' + ",".join(item(i) for i in rows) + "]}").encode()
        last = rows[-1]
        assert stamp == f"{second}{item(last).rpartition(str(second))[2][:-1]}".encode()
        ask = spec.price_text(int(s.ask[last])) if s.ask[last] else "null"
        assert json.loads(quote) == {
            "symbol": "DOL",
            "price": float(spec.price_text(int(price[last]))),
            "volume": int(qty[rows].sum()),
            "timestamp": float(stamp),
            "bid": float(spec.price_text(int(s.bid[last]))),
            "ask": None if ask == "null" else float(ask),
        }
    cancels = rest[2 * nq + nb + 3 * nl :]
    assert cancels == [item(i).encode() for i in np.flatnonzero(cancel).tolist()]
