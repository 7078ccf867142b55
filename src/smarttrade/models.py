"""The contract's JSON shapes (DESIGN.md §1) as msgspec structs, and the codecs around them.

Decoding validates and names the offending field (``$.price``). Reads use msgspec's lax mode so a
hand-typed ``"5.234"`` still reads as a number, while ``"abc"`` is an error. Fields that seed-style
hand-written values leave out are optional here and filled from the key by the stores.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import Meta, Struct

from smarttrade.errors import DecodeError

_MAX = 1e15  # also rejects inf, which JSON cannot carry anyway
Price = Annotated[float, Meta(gt=0, lt=_MAX)]
Volume = Annotated[int, Meta(ge=0)] | Annotated[float, Meta(ge=0, lt=_MAX)]
TradeVolume = Annotated[int, Meta(gt=0)] | Annotated[float, Meta(gt=0, lt=_MAX)]
Epoch = Annotated[int, Meta(ge=0)] | Annotated[float, Meta(ge=0, lt=_MAX)]
Side = Literal["buy", "sell"]
Symbol = Annotated[str, Meta(pattern=r"^[A-Z0-9][A-Z0-9._-]{0,31}$")]
UserId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.@-]{1,128}$")]
Ratio = Annotated[float, Meta(ge=0, le=1)]


class Quote(Struct, kw_only=True):
    symbol: Symbol | None = None  # from the key when missing
    price: Price
    volume: Volume = 0
    timestamp: Epoch | None = None  # from the key when missing
    bid: Price | None = None
    ask: Price | None = None


class Trade(Struct, kw_only=True):
    price: Price
    volume: TradeVolume
    side: Side
    time: Epoch


class TradeMessage(Struct, kw_only=True):
    """One commit's pub/sub message on ``trades:SYMBOL`` (the gateway's input; docs/ingest.md).

    ``quote`` is the second's merged quote after the commit (null when it had no live trade);
    ``trades`` the commit's trades by second; ``cancelled`` the trades it cancelled. ``offset`` is
    the commit's entry id in the symbol's trade stream (its position, for a client's ``since``) and
    ``epoch`` that stream's epoch (keyspace.STREAM_EPOCH_PREFIX); both empty for a commit with no
    stream entry. The ingest commit writes its head and tail from this struct and splices the
    trades, the offset and the epoch in inside Redis. ``seq`` counts one source's commits of the
    symbol (its checkpoint), so it is no position for readers: two sources each count their own.
    """

    symbol: Symbol
    seq: int
    quote: Quote | None
    trades: list[Trade]
    cancelled: list[Trade]
    offset: str = ""
    epoch: str = ""


class StreamEntry(Struct, kw_only=True):
    """One commit's entry in ``stream:trades:SYMBOL`` (replay for a gateway that reconnects).

    A stream entry's fields are strings: ``trades`` and ``cancelled`` are JSON arrays of Trade,
    ``ids`` the trade ids comma-joined, ``src`` one side-source letter per trade (feeds.chunk),
    both in ``trades``' order. ``decode_stream_entry`` reads one.
    """

    seq: int
    trades: list[Trade]
    ids: list[str]
    src: str
    cancelled: list[Trade]


STREAM_FIELDS = StreamEntry.__struct_fields__  # the XADD field names, in the order written


class OrderFlowBucket(Struct, kw_only=True):
    symbol: Symbol | None = None
    trades: list[Trade] = msgspec.field(default_factory=list)


class FootprintLevel(Struct, kw_only=True):
    price: Price | None = None  # from the key's LEVEL and the symbol's scale when missing
    buy_volume: Volume = 0
    sell_volume: Volume = 0
    total_volume: Volume | None = None  # buy + sell when missing
    imbalance: Ratio | None = None  # buy / total (0..1) when missing; 0 when total is 0


class Calc(Struct, kw_only=True):
    indicator: str | None = None
    value: Annotated[float, Meta(gt=-_MAX, lt=_MAX)]
    timestamp: Epoch | None = None
    period: Annotated[int, Meta(gt=0)] | None = None


class Session(Struct, kw_only=True):
    user_id: UserId | None = None
    socket_id: Annotated[str, Meta(min_length=1, max_length=128)]
    connected_at: Epoch | None = None
    subscriptions: Annotated[list[Symbol], Meta(max_length=500)] = msgspec.field(default_factory=list)


class AlertRule(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """``config:USER:alerts``' value per symbol. ``trigger`` and ``expires_at`` are optional and
    left out when default, so a rule without them is written exactly as older readers know it."""

    price: Price
    type: Literal["above", "below"]
    trigger: Literal["once", "every"] = "once"  # every: re-armed one tick back (docs/alerts.md)
    expires_at: Epoch | None = None  # epoch seconds; an expired alert never fires


Theme = Literal["dark", "light"]
Watchlist = Annotated[list[Symbol], Meta(max_length=500)]

T = TypeVar("T")
_encoder = msgspec.json.Encoder()
_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


def encode(value: Any) -> bytes:
    """Compact JSON, the only format we write."""
    return _encoder.encode(value)


def decode(kind: type[T] | Any, raw: bytes | str, where: str) -> T:
    """Decode and validate ``raw`` as ``kind``; DecodeError says where and which field."""
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = _decoders[kind] = msgspec.json.Decoder(kind, strict=False)
    try:
        return decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise DecodeError(where, str(exc).replace("`", "")) from None
    except RecursionError:  # e.g. '[' * 3000 into an Any field: msgspec recurses per level
        raise DecodeError(where, "nested too deeply") from None


def decode_stream_entry(fields: dict[Any, Any], where: str) -> StreamEntry:
    """A stream entry's fields (bytes or str, as XRANGE returns them) as a StreamEntry."""
    text = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in fields.items()}  # fmt: skip
    missing = [name for name in STREAM_FIELDS if name not in text]
    if missing:
        raise DecodeError(where, f"missing field {missing[0]!r}")
    if not text["seq"].isdigit():
        raise DecodeError(where, "$.seq must be an integer")
    return StreamEntry(
        seq=int(text["seq"]),
        trades=decode(list[Trade], text["trades"], f"{where} trades"),
        ids=text["ids"].split(",") if text["ids"] else [],
        src=text["src"],
        cancelled=decode(list[Trade], text["cancelled"], f"{where} cancelled"),
    )


def to_builtins(value: Any) -> Any:
    return msgspec.to_builtins(value)
