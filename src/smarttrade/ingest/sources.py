"""From command-line choices to a Feed: the formats by name, the synthetic modes, source names."""

from __future__ import annotations

import hashlib
import re
from datetime import date
from pathlib import Path

from smarttrade.errors import ValidationError
from smarttrade.feeds.b3 import B3Parser
from smarttrade.feeds.files import LineParser
from smarttrade.feeds.formats import Format
from smarttrade.feeds.generic import CsvParser, JsonLinesParser
from smarttrade.feeds.mt5 import Mt5Parser
from smarttrade.feeds.synthetic import B3_SESSION, LiveSyntheticFeed, SessionHours, SyntheticFeed
from smarttrade.feeds.tardis import TardisParser
from smarttrade.ingest.defaults import DEFAULT_FUTURE_S, DEFAULT_TOLERANCE_S
from smarttrade.ingest.identity import head_of
from smarttrade.ingest.run import ChunkFeed, Feed, FileFeed
from smarttrade.keyspace import SOURCE_RE
from smarttrade.symbols import check_symbol, spec_for


def source_name(text: str) -> str:
    """A name safe in keys (checkpoints): long or odd names are shortened with a hash."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "source"
    if len(clean) > 80 or not SOURCE_RE.match(clean):
        clean = f"{clean[:60]}-{hashlib.sha1(text.encode()).hexdigest()[:12]}"
    return clean


def file_feed(
    fmt: Format,
    paths: list[Path],
    name: str | None = None,
    symbol: str | None = None,
    only: set[str] | None = None,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    future_s: float = DEFAULT_FUTURE_S,
) -> FileFeed:
    """A feed of these files; its source name is settled by content when it runs (identity.py):
    the default name (format, file names, head hash) only names a source seen for the first time."""
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ValidationError("FILE", f"not a readable file: {', '.join(missing)}")
    if fmt is Format.MT5:
        if symbol is None:  # MT5 exports carry no symbol: WINZ25_ticks.csv -> WINZ25
            symbol = paths[0].name.split("_")[0].split(".")[0].upper()
        spec_for(check_symbol(symbol))
        mt5_symbol = symbol

        def parser() -> LineParser:
            return Mt5Parser(mt5_symbol)
    elif fmt is Format.B3:

        def parser() -> LineParser:
            return B3Parser(only=only)
    else:
        parser = {Format.CSV: CsvParser, Format.JSONL: JsonLinesParser, Format.TARDIS: TardisParser}[fmt]
    head, _ = head_of(paths)
    default = f"{fmt.value}-{'+'.join(p.name for p in paths)}-{head[:10]}"
    feed = FileFeed(parser, paths, source_name(name or default), tolerance_s)
    feed.fmt, feed.explicit, feed.future_s = fmt.value, name is not None, future_s
    return feed


def synthetic_feed(
    symbols: list[str],
    seed: int,
    count: int | None,
    rate: float,
    start_day: date | None,
    session: str,
    name: str | None = None,
) -> Feed:
    """``count`` set: a replay of that many trades; unset: an endless feed on the wall clock."""
    for s in symbols:
        spec_for(check_symbol(s))
    if count is None:
        live = LiveSyntheticFeed(symbols, seed=seed, rate=rate)
        return ChunkFeed(live.chunks, source_name(name or live.name), live=True)
    hours = None if session == "always" else (B3_SESSION if not session else SessionHours.parse(session))
    syn = SyntheticFeed(symbols, seed=seed, count=count, rate=rate, start_day=start_day, session=hours)
    return ChunkFeed(syn.chunks, source_name(name or syn.name), total=count)
