"""The WebSocket protocol's messages (docs/protocol.md): what a client may send, decoded and
checked in one place, and the server's frames, encoded once.

A client message that does not decode becomes a ``ProtocolError`` whose code and message go back
to the client as an error frame; the socket stays open. Close codes live here too, so the endpoint,
the hub and the documentation agree on them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from smarttrade.models import Symbol
from smarttrade.stores.trade_stream import entry_order

MAX_MESSAGE_BYTES = 64 * 1024
MAX_SYMBOLS = 50  # per socket
CHANNELS = ("quotes", "trades", "footprint", "bars", "indicators", "alerts")
Channel = Literal["quotes", "trades", "footprint", "bars", "indicators", "alerts"]
# A stream entry id as Redis writes it (``1700000000000-0``).
Offset = Annotated[str, Meta(pattern=r"^[0-9]{1,20}-[0-9]{1,20}$")]
Epoch = Annotated[str, Meta(min_length=1, max_length=64)]

# Close codes (docs/protocol.md, "Close codes").
CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008  # far over the message rate limit
CLOSE_IDLE = 4000  # nothing received for IDLE_TIMEOUT_S
CLOSE_TOO_SLOW = 4008  # the socket does not read its frames fast enough
CLOSE_UNAUTHORIZED = 4401
IDLE_TIMEOUT_S = 60.0


class Since(Struct, forbid_unknown_fields=True):
    offset: Offset
    epoch: Epoch


class Subscribe(Struct, tag="subscribe", tag_field="type", forbid_unknown_fields=True):
    symbols: Annotated[list[Symbol], Meta(min_length=1, max_length=MAX_SYMBOLS)]
    channels: Annotated[list[Channel], Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: ["quotes", "trades", "footprint"]
    )
    since: dict[Symbol, Since] = msgspec.field(default_factory=dict)


class Unsubscribe(Struct, tag="unsubscribe", tag_field="type", forbid_unknown_fields=True):
    symbols: Annotated[list[Symbol], Meta(min_length=1, max_length=MAX_SYMBOLS)]


class Ping(Struct, tag="ping", tag_field="type", forbid_unknown_fields=True):
    id: Annotated[str, Meta(max_length=128)] | int | None = None


ClientMessage = Subscribe | Unsubscribe | Ping
_decoder = msgspec.json.Decoder(ClientMessage)
_encoder = msgspec.json.Encoder()


class ProtocolError(Exception):
    """A client message the gateway refuses; ``code`` names the kind for programs."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def parse(data: str | bytes) -> ClientMessage:
    """One client message, checked; ProtocolError says what is wrong and where."""
    size = len(data.encode() if isinstance(data, str) else data)
    if size > MAX_MESSAGE_BYTES:
        raise ProtocolError("too_large", f"message of {size} bytes; at most {MAX_MESSAGE_BYTES}")
    try:
        msg = _decoder.decode(data)
    except msgspec.ValidationError as exc:
        text = str(exc).replace("`", "")
        code = "unknown_type" if text.startswith("Invalid value") and text.endswith("$.type") else "invalid"
        raise ProtocolError(code, text) from None
    except msgspec.DecodeError as exc:
        raise ProtocolError("malformed", f"not JSON: {exc}") from None
    except RecursionError:
        raise ProtocolError("malformed", "nested too deeply") from None
    if isinstance(msg, Subscribe):
        extra = set(msg.since) - set(msg.symbols)
        if extra:
            raise ProtocolError("invalid", f"since: {sorted(extra)[0]} is not in symbols - at $.since")
    return msg


def encode(frame: dict[str, Any]) -> str:
    """A server frame as the text every socket receiving it is sent (encoded once)."""
    return _encoder.encode(frame).decode()


def error_frame(code: str, message: str) -> str:
    return encode({"type": "error", "code": code, "message": message})


offset_key = entry_order  # a stream entry id as a comparable pair, (0, 0) for none
