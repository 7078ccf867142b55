"""The HTTP API's response shapes (pydantic, so /openapi.json describes every answer).

The market-data shapes are the wire contract's (docs/keyspace.md) as the stores read them; the
rest are the gateway's own. Prices and volumes are in each instrument's own units.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class QuoteOut(BaseModel):
    symbol: str
    price: float
    volume: float
    timestamp: float
    bid: float | None = None
    ask: float | None = None


class Watchlist(BaseModel):
    """Latest quote per asked symbol; null for a known symbol with no quote in the TTL window."""

    quotes: dict[str, QuoteOut | None]


class QuoteHistory(BaseModel):
    symbol: str
    quotes: list[QuoteOut] = Field(description="one per second of the quote TTL window, oldest first")


class TradeOut(BaseModel):
    price: float
    volume: float
    side: Literal["buy", "sell"]
    time: float


class TapeEntry(BaseModel):
    """One ingest commit of the symbol: its trades, and the trades it cancelled."""

    offset: str = Field(description="the commit's entry id in stream:trades:SYMBOL")
    seq: int
    trades: list[TradeOut]
    cancelled: list[TradeOut]


class Tape(BaseModel):
    symbol: str
    epoch: str | None = Field(description="the stream's epoch; a new one means its history was lost")
    entries: list[TapeEntry]
    next: str | None = Field(description="pass as ?after= for the next page; null when none follows")
    complete: bool = Field(
        description="false when the asked start is older than what the stream holds (trimmed to its window)"
    )


class LevelOut(BaseModel):
    level: int = Field(description="round(price * price_scale), the key's LEVEL")
    price: float | None
    buy_volume: float
    sell_volume: float
    total_volume: float
    imbalance: float = Field(description="buy_volume / total_volume, 0..1")


class Ladder(BaseModel):
    symbol: str
    levels: list[LevelOut] = Field(description="highest price first")


class BarLevel(BaseModel):
    price: float
    bid: float
    ask: float
    delta: float
    buy_imbalance: bool
    sell_imbalance: bool


class BarFootprint(BaseModel):
    poc: float
    value_area: list[float] = Field(description="[low, high]")
    delta: float
    volume: float
    unfinished_high: bool
    unfinished_low: bool
    stacked: list[list[Any]] = Field(description="[side, low price, high price] per stacked zone")
    levels: list[BarLevel]


class BarOut(BaseModel):
    timeframe: str
    start: int
    session: str | None = None
    open: float | None = None
    high: float | None = None
    low: float | None = None
    close: float | None = None
    volume: float | None = None
    buy: float | None = None
    sell: float | None = None
    delta: float | None = None
    cum_delta: float | None = None
    trades: int | None = None
    closed: bool = False
    indicators: dict[str, float] = Field(default_factory=dict, description="written when the bar closed")
    footprint: BarFootprint | None = None


class Bars(BaseModel):
    symbol: str
    timeframe: str
    bars: list[BarOut] = Field(description="oldest first")


class CalcOut(BaseModel):
    indicator: str
    value: float
    timestamp: float | None = None
    period: int | None = None


class Indicators(BaseModel):
    symbol: str
    closed: dict[str, CalcOut] = Field(description="the calculations store: values of closed bars")
    forming: dict[str, dict[str, float]] = Field(
        description="per timeframe, values as if the forming bar closed now (from the ingester's state)"
    )


class Setting(BaseModel):
    name: str
    value: Any


class UserSettings(BaseModel):
    settings: dict[str, Any]


class SessionOut(BaseModel):
    user_id: str
    socket_id: str
    connected_at: float | None = None
    subscriptions: list[str]


class Deleted(BaseModel):
    deleted: bool


class StoreKeysOut(BaseModel):
    store: str
    db: int
    keys: int
    expiring: int


class OpsStatus(BaseModel):
    gateway_id: str
    redis: str
    ping_ms: float
    version: str
    role: str
    used_memory: int
    maxmemory: int
    connected_clients: int
    stores: list[StoreKeysOut]


class Check(BaseModel):
    ok: bool
    detail: str
    ms: float | None = None


class Health(BaseModel):
    """Also an error body when unhealthy: ``code`` and ``message`` say why."""

    ok: bool
    code: Literal["ok", "unhealthy"]
    message: str
    gateway_id: str
    redis: Check
    delivery: Check
