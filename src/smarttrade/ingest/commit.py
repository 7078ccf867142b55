"""One symbol's share of a batch, turned into the KEYS/ARGV of the INGEST_COMMIT script.

Everything here is per batch or per distinct second/level, except the trade objects themselves,
which are formatted once and reused for the order-flow buckets, the stream and the pub/sub
message. Prices, quantities and times stay integers until this point, so the text is exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from msgspec import Raw

from smarttrade.analytics.bars import Op
from smarttrade.errors import SmartTradeError
from smarttrade.feeds.chunk import SIDE_SOURCE_LETTERS
from smarttrade.keyspace import (
    checkpoint_key,
    footprint_key,
    last_quote_key,
    orderflow_key,
    quote_key,
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
_SIDES = np.array(['"sell"', "", '"buy"'], dtype=object)  # indexed by side + 1
_MS_TEXT = ["." + f"{k:03d}".rstrip("0") if k else "" for k in range(1000)]
_MS_ARRAY = np.array(_MS_TEXT, dtype=object)
_LETTERS = bytes.maketrans(bytes(range(len(SIDE_SOURCE_LETTERS))), SIDE_SOURCE_LETTERS.encode())


def _frac_text(us: int) -> str:
    if us % 1000 == 0:
        return _MS_TEXT[us // 1000]
    return "." + f"{us:06d}".rstrip("0")


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
    """Where the commit writes: databases and TTLs (from Settings). The commit is sent on a
    connection to ``db_quotes``; when every store shares that db, it runs without SELECT."""

    db_quotes: int
    db_orderflow: int
    db_footprint: int
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
    frac_arr = sl.time_us - seconds * 1_000_000
    sec_list = seconds.tolist()
    levels, inverse = np.unique(sl.price, return_inverse=True)
    level_texts = [spec.price_text(lv) for lv in levels.tolist()]
    price_text = dict(zip(levels.tolist(), level_texts, strict=True))
    ptexts = np.array(level_texts, dtype=object)[inverse].tolist()
    qtexts = sl.qty.tolist() if decimals == 0 else [qty_text(q, decimals) for q in sl.qty.tolist()]
    stexts = _SIDES[sl.side + 1].tolist()
    if not (frac_arr % 1000).any():  # millisecond stamps (B3, the generator): a table lookup
        ftexts = _MS_ARRAY[frac_arr // 1000].tolist()
    else:
        ftexts = [_frac_text(f) for f in frac_arr.tolist()]
    items = [
        f'{{"price":{p},"volume":{q},"side":{s},"time":{sec}{f}}}'
        for p, q, s, sec, f in zip(ptexts, qtexts, stexts, sec_list, ftexts, strict=True)
    ]
    fracs = frac_arr.tolist()
    live = ~sl.cancel
    live_idx = np.flatnonzero(live) if not live.all() else None

    # order flow buckets and quotes: per second, in source order within the second
    keys_q: list[str] = []
    args_q: list[str] = []
    keys_b: list[str] = []
    args_b: list[str] = []
    idx = np.arange(n) if live_idx is None else live_idx
    identity = False
    last_quote_ts = "0"
    if idx.size:
        secs = seconds[idx]
        if np.any(secs[1:] < secs[:-1]):  # late trades within the tolerance
            idx = idx[np.argsort(secs, kind="stable")]
            secs = seconds[idx]
        identity = live_idx is None and idx.size == n and bool((idx == np.arange(n)).all())
        bounds = np.flatnonzero(np.diff(secs)) + 1
        starts = [0, *bounds.tolist()]
        ends = [*bounds.tolist(), idx.size]
        idx_list = idx.tolist()
        qty_cum = np.concatenate(([0], np.cumsum(sl.qty[idx])))
        bid, ask = sl.bid.tolist(), sl.ask.tolist()
        for a, b in zip(starts, ends, strict=True):
            second = sec_list[idx_list[a]]
            keys_b.append(orderflow_key(symbol, second))
            args_b.append(",".join(items[a:b] if identity else [items[i] for i in idx_list[a:b]]))
            last = idx_list[b - 1]
            ts = f"{second}{_frac_text(fracs[last])}"
            vol = qty_text(int(qty_cum[b] - qty_cum[a]), decimals)
            bid_t = price_text.get(bid[last]) or (spec.price_text(bid[last]) if bid[last] else "null")
            ask_t = price_text.get(ask[last]) or (spec.price_text(ask[last]) if ask[last] else "null")
            keys_q.append(quote_key(symbol, second))
            args_q += [
                f'{{"symbol":{sym_json},"price":{price_text[sl.price[last].item()]},"volume":{vol}'
                f',"timestamp":{ts},"bid":{bid_t},"ask":{ask_t}}}',
                ts,
            ]
            last_quote_ts = ts
    # the latest quote is the one of the newest second, which sorts last
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
    for lv, bv, sv in zip(levels.tolist(), buys.tolist(), sells.tolist(), strict=True):
        if bv or sv:
            keys_l.append(footprint_key(symbol, lv))
            args_l += [price_text[lv], qty_text(int(bv), decimals), qty_text(int(sv), decimals)]
    # cancels: remove each trade object from its bucket, exactly as it was written
    keys_c: list[str] = []
    args_c: list[str] = []
    if live_idx is not None:
        for i in np.flatnonzero(sl.cancel).tolist():
            keys_c += [orderflow_key(symbol, sec_list[i]), quote_key(symbol, sec_list[i])]
            args_c.append(items[i])

    # the trades, by second (the buckets' order, which ids and side sources follow), go twice: as
    # the new buckets' JSON and whole, for the stream and the pub/sub message (cheaper in Redis than
    # joining them there)
    trades_json = "[" + ",".join(args_b) + "]"
    bucket_head = f'{{"symbol":{sym_json},"trades":['
    args_b = [f"{bucket_head}{lst}]}}" for lst in args_b]
    cancelled_json = "[" + ",".join(args_c) + "]"
    if isinstance(sl.ids, np.ndarray):
        ids = ",".join(map(str, sl.ids[idx].tolist()))
    elif identity:
        ids = ",".join(sl.ids)
    else:
        ids = ",".join([sl.ids[i] for i in idx.tolist()])
    letters = sl.side_src[idx].astype(np.uint8).tobytes().translate(_LETTERS).decode()
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
    one_db = len({layout.db_quotes, layout.db_orderflow, layout.db_footprint, *(op[1] for op in ops)}) == 1
    args: list[str | bytes | int] = [
        *COMMIT.pack_argv(
            seq=seq,
            ordinal=ordinal,
            dbs="" if one_db else f"{layout.db_quotes} {layout.db_orderflow} {layout.db_footprint}",
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
