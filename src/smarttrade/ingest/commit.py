"""One symbol's share of a batch, turned into the KEYS/ARGV of the INGEST_COMMIT script.

No Python loop here runs per trade (cancels aside): the trade objects are written once, as
columns of one byte matrix (ingest/rowtext.py), and the order-flow buckets, the stream and the
pub/sub message all take slices of that text; the rest is per distinct second or level. Prices,
quantities and times stay integers until this point, so the text is exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from msgspec import Raw

from smarttrade.analytics.bars import Op
from smarttrade.errors import SmartTradeError
from smarttrade.feeds.chunk import SIDE_SOURCE_LETTERS
from smarttrade.ingest import rowtext
from smarttrade.keyspace import (
    checkpoint_key,
    footprint_key,
    last_quote_key,
    orderflow_key,
    orderflow_keys,
    quote_key,
    quote_keys,
    script_calls_key,
    stream_epoch_key,
    trades_channel,
    trades_stream_key,
)
from smarttrade.models import TradeMessage, encode
from smarttrade.redis.scripts import COMMIT
from smarttrade.symbols import SymbolSpec

_EXACT = 2**53  # Lua adds quantities as doubles: exact below this
_US = "\x1f"  # separates an analytics op's parts (never in our keys, numbers or JSON)
_SIDES = ['"sell"', "", '"buy"']  # indexed by side + 1
_LETTERS = bytes.maketrans(bytes(range(len(SIDE_SOURCE_LETTERS))), SIDE_SOURCE_LETTERS.encode())


def ordinal_digest(ordinals: np.ndarray) -> int:
    """A sum of 31-bit hashes of source ordinals: with their count, it tells whether the set of
    lines accepted up to a checkpoint is still the one committed (a plain sum would not: 3+6 = 4+5).
    Order-free, so it adds up over commits inside the script (HINCRBY; stays below 2**63)."""
    x = ordinals.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    x ^= x >> np.uint64(31)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(29)
    return int((x >> np.uint64(33)).sum(dtype=np.uint64))


def qty_text(units: int, decimals: int) -> str:
    if decimals == 0:
        return str(units)
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(units), 10**decimals)
    frac_text = f"{frac:0{decimals}d}".rstrip("0")
    return f"{sign}{whole}.{frac_text}" if frac_text else f"{sign}{whole}"


def message_frame(symbol: str, seq: int, cancelled_json: str) -> tuple[str, str]:
    """The pub/sub message (models.TradeMessage) around its trades: its head up to ``"trades":``,
    with ``"quote":null`` for the script to fill in, and its tail after them up to the offset's
    value (the script appends the offset and the epoch, which only it knows)."""
    frame = TradeMessage(
        symbol=symbol, seq=seq, quote=None, trades=_NO_TRADES, cancelled=Raw(cancelled_json.encode())
    )
    head, _, tail = encode(frame).decode().partition(_TRADES_MARK)
    return head + _TRADES_MARK[:-2], tail.partition(_OFFSET_MARK)[0] + _OFFSET_MARK


_NO_TRADES = Raw(b"[]")
_TRADES_MARK = '"trades":[]'
_OFFSET_MARK = ',"offset":'


@dataclass(frozen=True, slots=True)
class Layout:
    """Where the commit writes and for how long: ``select`` is the topology's select plan
    (Topology.commit_select, passed through as it is: "" runs the commit without SELECT), the
    TTLs come from Settings."""

    select: str
    ttl_quotes: int
    ttl_orderflow: int
    ttl_footprint: int
    ttl_last: int


@dataclass(slots=True)
class SymbolSlice:
    """One symbol's trades of a batch, as columns in source order."""

    symbol: str
    price: np.ndarray
    qty: np.ndarray
    side: np.ndarray
    side_src: np.ndarray
    time_us: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    cancel: np.ndarray
    ids: list[str] | np.ndarray  # trade ids, or the ordinals when the source has none


@dataclass(slots=True)
class Commit:
    symbol: str
    keys: list[str]
    args: list[str | bytes | int]
    trades: int
    cancels: int


def build_commit(
    sl: SymbolSlice,
    spec: SymbolSpec,
    source: str,
    seq: int,
    ordinal: int,
    layout: Layout,
    ops: Sequence[Op] = (),
    state: str = "",
    ordinals: np.ndarray | None = None,
) -> Commit:
    """The script's KEYS and ARGV; ``ops`` (analytics writes) and ``state`` ride along.

    ``ordinals``: the source ordinals of the slice's rows, counted into the checkpoint."""
    symbol = sl.symbol
    decimals = spec.qty_decimals
    sym_json = encode(symbol).decode()
    n = len(sl.price)
    seconds = sl.time_us // 1_000_000
    fracs = sl.time_us - seconds * 1_000_000
    levels, inverse = np.unique(sl.price, return_inverse=True)
    level_list = levels.tolist()
    price_text = {lv: spec.price_text(lv) for lv in level_list}
    level_texts = list(price_text.values())
    # every trade object as written everywhere (buckets, stream, message, cancels): one matrix
    trade_rows = rowtext.matrix(
        n,
        [
            b'{"price":',
            rowtext.lookup(level_texts, inverse),
            b',"volume":',
            rowtext.quantity(sl.qty, decimals),
            b',"side":',
            rowtext.lookup(_SIDES, sl.side + 1),
            b',"time":',
            rowtext.integers(seconds),
            rowtext.fraction(fracs, 6),
            b"},",
        ],
    )
    live = ~sl.cancel
    live_idx = np.flatnonzero(live) if not live.all() else None

    # order flow buckets and quotes: per second, in source order within the second
    keys_q: list[str] = []
    args_q: list[bytes] = []
    keys_b: list[str] = []
    args_b: list[bytes] = []
    idx = np.arange(n) if live_idx is None else live_idx
    identity = False
    last_quote_ts = b"0"
    trades_json = b"[]"
    bucket_head = f'{{"symbol":{sym_json},"trades":['.encode()
    if idx.size:
        secs = seconds[idx]
        if np.any(secs[1:] < secs[:-1]):  # late trades within the tolerance
            idx = idx[np.argsort(secs, kind="stable")]
            secs = seconds[idx]
        identity = live_idx is None and bool((idx == np.arange(n)).all())
        body, offsets = rowtext.join(trade_rows, None if identity else idx)
        trades_json = b"[" + body[:-1] + b"]"
        starts = np.concatenate(([0], np.flatnonzero(np.diff(secs)) + 1))
        ends = np.append(starts[1:], idx.size)
        view = memoryview(body)
        args_b = [
            b"".join((bucket_head, view[offsets[a] : offsets[b] - 1], b"]}"))
            for a, b in zip(starts.tolist(), ends.tolist(), strict=True)
        ]
        # a second's quote: its newest trade's price, time, bid and ask, and the second's volume
        last = idx[ends - 1]
        qty_cum = np.concatenate(([0], np.cumsum(sl.qty[idx])))
        quote_of = [*sl.bid[last].tolist(), *sl.ask[last].tolist()]
        sides = sorted(set(quote_of))
        side_text = [price_text.get(v) or (spec.price_text(v) if v else "null") for v in sides]
        side_at = np.searchsorted(sides, quote_of)
        stamps, stamp_at = rowtext.join(
            rowtext.matrix(last.size, [rowtext.integers(seconds[last]), rowtext.fraction(fracs[last], 6)])
        )
        quotes, quote_at = rowtext.join(
            rowtext.matrix(
                last.size,
                [
                    f'{{"symbol":{sym_json},"price":'.encode(),
                    rowtext.lookup(level_texts, inverse[last]),
                    b',"volume":',
                    rowtext.quantity(qty_cum[ends] - qty_cum[starts], decimals),
                    b',"timestamp":',
                    rowtext.integers(seconds[last]),
                    rowtext.fraction(fracs[last], 6),
                    b',"bid":',
                    rowtext.lookup(side_text, side_at[: last.size]),
                    b',"ask":',
                    rowtext.lookup(side_text, side_at[last.size :]),
                    b"}",
                ],
            )
        )
        stamp_list = rowtext.split(stamps, stamp_at)
        args_q = [b""] * (2 * last.size)
        args_q[0::2] = rowtext.split(quotes, quote_at)
        args_q[1::2] = stamp_list
        last_quote_ts = stamp_list[-1]  # the latest quote is the one of the newest second, last
        group_secs = seconds[last].tolist()
        keys_q = quote_keys(symbol, group_secs)
        keys_b = orderflow_keys(symbol, group_secs)
    # footprint: signed deltas per level (a cancel subtracts)
    signed = np.where(sl.cancel, -sl.qty, sl.qty)
    buys = np.zeros(levels.size, dtype=np.int64)  # integer sums: a float would round past 2**53
    sells = np.zeros(levels.size, dtype=np.int64)
    np.add.at(buys, inverse, np.where(sl.side > 0, signed, 0))
    np.add.at(sells, inverse, np.where(sl.side < 0, signed, 0))
    if max(int(np.abs(buys).max()), int(np.abs(sells).max()), int(np.abs(sl.qty).sum())) >= _EXACT:
        raise SmartTradeError(
            f"{symbol}: quantities too large to add exactly in one commit (>= 2**53 units of "
            f"10**-{decimals}); lower the symbol's quantity decimals"
        )
    keys_l: list[str] = []
    args_l: list[str] = []
    for lv, bv, sv in zip(level_list, buys.tolist(), sells.tolist(), strict=True):
        if bv or sv:
            keys_l.append(footprint_key(symbol, lv))
            args_l += [price_text[lv], qty_text(int(bv), decimals), qty_text(int(sv), decimals)]
    # cancels: remove each trade object from its bucket, exactly as it was written
    keys_c: list[str] = []
    args_c: list[bytes] = []
    if live_idx is not None:
        cancelled = np.flatnonzero(sl.cancel)
        for s in seconds[cancelled].tolist():
            keys_c += [orderflow_key(symbol, s), quote_key(symbol, s)]
        args_c = rowtext.split(*rowtext.join(trade_rows, cancelled), strip=1)

    # the trades, by second (the buckets' order, which ids and side sources follow), go twice: as
    # the new buckets' JSON and whole, for the stream and the pub/sub message (cheaper in Redis than
    # joining them there)
    cancelled_json = "[" + b",".join(args_c).decode() + "]"
    if isinstance(sl.ids, np.ndarray):
        ids = rowtext.join(rowtext.matrix(idx.size, [rowtext.integers(sl.ids[idx]), b","]))[0][:-1]
    elif identity:
        ids = ",".join(sl.ids).encode()
    else:
        ids = ",".join([sl.ids[i] for i in idx.tolist()]).encode()
    letters = sl.side_src[idx].astype(np.uint8).tobytes().translate(_LETTERS)
    head, tail = message_frame(symbol, seq, cancelled_json)
    keys = [
        *COMMIT.pack_keys(
            checkpoint=checkpoint_key(source, symbol),
            last_key=last_quote_key(symbol),
            stream=trades_stream_key(symbol),
            epoch_key=stream_epoch_key(symbol),
            calls_key=script_calls_key(symbol),
        ),
        *keys_q,
        *keys_b,
        *keys_l,
        *keys_c,
    ]
    args: list[str | bytes | int] = [
        *COMMIT.pack_argv(
            seq=seq,
            ordinal=ordinal,
            dbs=layout.select,
            ttls=f"{layout.ttl_quotes} {layout.ttl_orderflow} {layout.ttl_footprint} {layout.ttl_last}",
            decimals=decimals,
            coverage="0 0" if ordinals is None else f"{ordinals.size} {ordinal_digest(ordinals)}",
            channel=trades_channel(symbol),
            sizes=f"{len(keys_q)} {len(keys_b)} {len(keys_l)} {len(args_c)} {len(ops)}",
            symbol_json=sym_json,
            msg_head=head,
            msg_tail=tail,
            stream_ids=ids,
            stream_src=letters,
            last_ts=last_quote_ts,
            trades=trades_json,
            cancelled=cancelled_json,
            state=state,
        ),
        *args_q,
        *args_b,
        *args_l,
        *args_c,
    ]
    for command, db, key, op_args in ops:
        keys.append(key)
        args.append(_US.join([command, str(db), *map(str, op_args)]))
    return Commit(symbol, keys, args, trades=int(idx.size), cancels=len(args_c))
