"""Resuming a client by offset: replay what it missed from the symbol's trade stream, or tell it
plainly that the history is gone and hand it a snapshot (never a silent gap).

Why the check is sound on Redis 6.2 and 7.x alike: the ingest commit only ever trims the stream
from its head (``XADD MINID ~``) and never XDELs, so if the client's own offset entry is still in
the stream, everything after it is too. Redis 7 also reports ``max-deleted-entry-id``; when it is
there and beyond the offset (someone XDELed in the middle) we refuse as well. Each page is read in
one MULTI with a re-check of the entry it continues from, so a trim racing the replay is caught.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis

from smarttrade.analytics.views import AnalyticsViews
from smarttrade.gateway.protocol import Since, offset_key
from smarttrade.keyspace import stream_epoch_key, trades_stream_key
from smarttrade.models import TradeMessage, decode_stream_entry, to_builtins
from smarttrade.stores import Stores
from smarttrade.stores.trade_stream import max_deleted_id
from smarttrade.symbols import spec_for
from smarttrade.timeframes import parse_timeframes

PAGE = 500  # stream entries per XRANGE
SNAPSHOT_TRIES = 3


class HistoryLost(Exception):
    """The stream no longer holds everything after the client's offset (or the epoch changed)."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else ("" if value is None else str(value))


async def replay(client: aioredis.Redis, symbol: str, since: Since) -> AsyncIterator[list[TradeMessage]]:
    """The messages after ``since.offset``, in pages, oldest first; HistoryLost when they cannot
    all be had. ``client`` is the order-flow store's (the stream's database)."""
    key, epoch_key = trades_stream_key(symbol), stream_epoch_key(symbol)
    epoch = _text(await client.get(epoch_key))
    if epoch != since.epoch:
        raise HistoryLost(f"{symbol}: epoch {since.epoch!r} is not the stream's {epoch or 'none'!r}")
    deleted = await max_deleted_id(client, key)
    if deleted and offset_key(deleted) > offset_key(since.offset):
        raise HistoryLost(f"{symbol}: entries after {since.offset} were deleted")
    last = since.offset
    while True:
        async with client.pipeline(transaction=True) as pipe:
            pipe.xrange(key, last, last, count=1)
            pipe.xrange(key, "(" + last, "+", count=PAGE)
            pipe.get(epoch_key)
            anchor, page, now_epoch = await pipe.execute()
        if not anchor or _text(now_epoch) != since.epoch:
            raise HistoryLost(f"{symbol}: the stream no longer holds {last}")
        if not page:
            return
        out = []
        for entry_id, fields in page:
            eid = _text(entry_id)
            entry = decode_stream_entry(fields, f"{key} {eid}")
            out.append(
                TradeMessage(
                    symbol=symbol,
                    seq=entry.seq,
                    quote=None,
                    trades=entry.trades,
                    cancelled=entry.cancelled,
                    offset=eid,
                    epoch=since.epoch,
                )
            )
        yield out
        last = out[-1].offset
        if len(page) < PAGE:
            return


async def position(client: aioredis.Redis, symbol: str) -> tuple[str, str]:
    """The stream's newest entry id and its epoch, read together ("" when there is none)."""
    async with client.pipeline(transaction=True) as pipe:
        pipe.xrevrange(trades_stream_key(symbol), "+", "-", count=1)
        pipe.get(stream_epoch_key(symbol))
        newest, epoch = await pipe.execute()
    return (_text(newest[0][0]) if newest else "", _text(epoch))


def ladder_json(symbol: str, levels: list[tuple[int, Any]]) -> list[dict[str, Any]]:
    return [
        {"level": lv, "price": fp.price, "buy": fp.buy_volume, "sell": fp.sell_volume} for lv, fp in levels
    ]


async def current_bars(views: AnalyticsViews, symbol: str, timeframes: str) -> dict[str, Any]:
    """The newest bar of each timeframe, as the HTTP API shows bars."""
    spec = spec_for(symbol)
    out: dict[str, Any] = {}
    for tf in parse_timeframes(timeframes):
        bars = await views.recent_bars(symbol, tf, 1)
        if bars:
            out[tf] = bars[-1].as_json(spec)
    return out


async def snapshot(stores: Stores, views: AnalyticsViews, symbol: str, timeframes: str) -> dict[str, Any]:
    """The symbol's state now: position, latest quote, the rolling footprint ladder and the current
    bars. The position is read before and after the rest; when a commit slipped in between, it is
    read again (a few times), so the ladder matches the offset a client resumes live from.
    ``consistent`` says whether it settled."""
    client = stores.orderflow.redis
    before = await position(client, symbol)
    settled = False
    for _ in range(SNAPSHOT_TRIES):
        quote = await stores.quotes.latest(symbol)
        levels = await stores.footprint.ladder(symbol)
        after = await position(client, symbol)
        settled, before = after == before, after
        if settled:
            break
    bars = await current_bars(views, symbol, timeframes)
    return {
        "offset": before[0],
        "epoch": before[1],
        "consistent": settled,
        "quote": to_builtins(quote),
        "ladder": ladder_json(symbol, levels),
        "bars": bars,
    }
