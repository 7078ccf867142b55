"""Propose an instrument declaration from a trade file: read it with the format's own parser
(every symbol as a fine-grained probe instrument, symbols.probing) and measure, per symbol, the
price grid (the greatest common step between traded prices) and the quantity decimals used.

A guess from few trades can be coarser than the venue's tick (prices that happen to share a
larger step); the report says how many trades it rests on.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import islice
from pathlib import Path

from smarttrade.feeds.files import parse_lines, read_lines
from smarttrade.feeds.formats import Format
from smarttrade.ingest.defaults import GUESS_MAX_LINES as MAX_LINES
from smarttrade.ingest.sources import file_feed
from smarttrade.symbols import BUILTIN, SPECS, SymbolSpec, parse_spec, probing, root_of


@dataclass
class _Seen:
    trades: int = 0
    first_price: int = 0
    step: int = 0  # gcd of (price - first price), in probe units
    qty_zeros: int = 99  # fewest trailing zeros of a quantity, in probe units
    price_zeros: int = 99


@dataclass
class Guess:
    symbol: str
    trades: int
    tick: str
    qty_decimals: int
    declaration: str  # the proposal, or the built-in / registered one
    status: str  # new, registered, differs from the registered ..., built-in

    def as_json(self) -> dict[str, object]:
        return dict(vars(self))


@dataclass
class GuessReport:
    lines: int
    rejected: int
    reasons: Counter[str] = field(default_factory=Counter)
    guesses: list[Guess] = field(default_factory=list)


def guess(fmt: Format, path: Path, symbol: str | None = None, max_lines: int = MAX_LINES) -> GuessReport:
    seen: dict[str, _Seen] = {}
    report = GuessReport(0, 0)
    with probing() as probe:
        feed = file_feed(fmt, [path], symbol=symbol)
        parser = feed.parser()
        for item in parse_lines(parser, islice(read_lines([path]), max_lines)):
            report.lines += 1
            if item.error is not None:
                report.rejected += 1
                report.reasons[item.error.split(":")[0]] += 1
                continue
            rec = item.record
            if rec is None or rec.cancel:
                continue
            s = seen.get(rec.symbol)
            if s is None:
                s = seen[rec.symbol] = _Seen(first_price=rec.price)
            s.trades += 1
            s.step = math.gcd(s.step, rec.price - s.first_price)
            s.qty_zeros = min(s.qty_zeros, _zeros(rec.qty))
            s.price_zeros = min(s.price_zeros, _zeros(rec.price))
    decimals = probe.qty_decimals
    for name, s in sorted(seen.items(), key=lambda kv: -kv[1].trades):
        step = s.step or 10 ** min(s.price_zeros, decimals)  # one price only: its own precision
        tick = Decimal(step).scaleb(-decimals).normalize()
        qty_decimals = max(0, decimals - s.qty_zeros)
        report.guesses.append(_judge(name, s.trades, tick, qty_decimals))
    return report


def _zeros(units: int) -> int:
    n = 0
    while units and units % 10 == 0 and n < 99:
        units //= 10
        n += 1
    return n


def _judge(symbol: str, trades: int, tick: Decimal, qty_decimals: int) -> Guess:
    tick_text = f"{tick:f}"
    root = root_of(symbol)
    known: SymbolSpec | None = SPECS.get(root)
    if root in BUILTIN:
        spec = BUILTIN[root]
        return Guess(symbol, trades, tick_text, qty_decimals, spec.declaration, "built-in")
    proposal = parse_spec(f"{symbol}:{tick_text}:{qty_decimals}")
    if known is None:
        return Guess(symbol, trades, tick_text, qty_decimals, proposal.declaration, "new")
    fits = (known.tick_units and (tick * known.price_scale) % known.tick_units == 0) and (
        known.qty_decimals >= qty_decimals
    )
    status = "registered, fits the data" if fits else "registered, does NOT fit the data"
    return Guess(symbol, trades, tick_text, qty_decimals, known.declaration, status)
