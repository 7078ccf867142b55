"""HTTP API routes (docs/gateway.md): market data, the user's own settings and session, admin
views, metrics and the health check.

Every route reads through the stores (or the analytics views) and raises the domain's errors;
errors.py maps them to codes. /healthz and /metrics need no token; everything under /api does.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from redis.exceptions import RedisError

from smarttrade.analytics.views import AnalyticsViews
from smarttrade.errors import DecodeError, NotFound, SmartTradeError, ValidationError
from smarttrade.gateway import health as gw_health
from smarttrade.gateway.deps import Admin, Ctx, Who
from smarttrade.gateway.errors import ERROR_RESPONSES
from smarttrade.gateway.responses import (
    BarOut,
    Bars,
    CalcOut,
    Deleted,
    Health,
    Indicators,
    Ladder,
    LevelOut,
    OpsStatus,
    QuoteHistory,
    QuoteOut,
    SessionOut,
    Setting,
    Tape,
    TapeEntry,
    TradeOut,
    UserSettings,
    Watchlist,
)
from smarttrade.keyspace import Store, stream_epoch_key, trades_stream_key
from smarttrade.models import Quote, decode_stream_entry, to_builtins
from smarttrade.ops.metrics import SmartTradeCollector
from smarttrade.ops.watch import Watcher
from smarttrade.redis.connections import redis_errors
from smarttrade.stores.trade_stream import entry_order, holds_after
from smarttrade.symbols import spec_for
from smarttrade.timeframes import parse_timeframes

router = APIRouter(responses=ERROR_RESPONSES)

MAX_WATCHLIST = 100
MAX_TAPE_PAGE = 1000
MAX_BARS = 500
STREAM_ID = r"^[0-9]{1,20}-[0-9]{1,20}$"

SymbolPath = Annotated[str, Path(min_length=1, max_length=32, description="DOL, WIN, WDOF26...")]


def known_symbol(symbol: str) -> str:
    """Upper-cased and known (404 for an instrument nobody declared, 422 for a malformed name)."""
    symbol = symbol.upper()
    spec_for(symbol)
    return symbol


def _quote(q: Quote) -> QuoteOut:
    return QuoteOut.model_validate(to_builtins(q))


# -- quotes -----------------------------------------------------------------------------------


@router.get("/api/quotes", response_model=Watchlist, tags=["quotes"])
async def watchlist(
    ctx: Ctx,
    _: Who,
    symbols: Annotated[str, Query(min_length=1, max_length=4000, description="comma-separated: DOL,WIN")],
) -> Watchlist:
    """The latest quote of each symbol of a watchlist."""
    names = list(dict.fromkeys(s.strip() for s in symbols.split(",") if s.strip()))
    if not names:
        raise ValidationError("symbols", "name at least one symbol (DOL,WIN)")
    if len(names) > MAX_WATCHLIST:
        raise ValidationError("symbols", f"at most {MAX_WATCHLIST} symbols (got {len(names)})")
    out: dict[str, QuoteOut | None] = {}
    for name in names:
        symbol = known_symbol(name)
        latest = await ctx.stores.quotes.latest(symbol)
        out[symbol] = _quote(latest) if latest else None
    return Watchlist(quotes=out)


@router.get("/api/quotes/{symbol}", response_model=QuoteOut, tags=["quotes"])
async def latest_quote(ctx: Ctx, _: Who, symbol: SymbolPath) -> QuoteOut:
    """The latest quote of a symbol (404 when it has none within the quote TTL)."""
    symbol = known_symbol(symbol)
    latest = await ctx.stores.quotes.latest(symbol)
    if latest is None:
        raise NotFound(f"no quote for {symbol} (none within the last {ctx.stores.quotes.ttl} s)")
    return _quote(latest)


@router.get("/api/quotes/{symbol}/history", response_model=QuoteHistory, tags=["quotes"])
async def quote_history(ctx: Ctx, _: Who, symbol: SymbolPath) -> QuoteHistory:
    """Per-second quotes over the quote TTL window ending at the latest one, oldest first."""
    symbol = known_symbol(symbol)
    return QuoteHistory(symbol=symbol, quotes=[_quote(q) for q in await ctx.stores.quotes.history(symbol)])


# -- the tape (trade stream) ------------------------------------------------------------------


@router.get("/api/trades/{symbol}", response_model=Tape, tags=["trades"])
async def tape(
    ctx: Ctx,
    _: Who,
    symbol: SymbolPath,
    since: Annotated[
        float | None, Query(ge=0, le=1e11, description="Unix seconds: commits from this time on")
    ] = None,
    after: Annotated[
        str | None, Query(pattern=STREAM_ID, description="an offset: commits after this one")
    ] = None,
    epoch: Annotated[str | None, Query(max_length=64, description="the epoch the offset belongs to")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_TAPE_PAGE)] = 100,
) -> Tape:
    """The tape from the trade stream (one entry per ingest commit), oldest first, one page.

    ``complete`` is false when part of what was asked is gone: the stream was trimmed past the
    start, or ``epoch`` is not the stream's epoch any more (its history was lost).
    """
    symbol = known_symbol(symbol)
    if since is not None and after is not None:
        raise ValidationError("after", "give since or after, not both")
    key = trades_stream_key(symbol)
    start = f"({after}" if after else (str(int(since * 1000)) if since is not None else "-")
    client = ctx.topology.client(Store.ORDERFLOW)
    with redis_errors(ctx.topology.url, key):
        rows = await client.xrange(key, min=start, max="+", count=limit + 1)
        first = await client.xrange(key, min="-", max="+", count=1)
        current = await client.get(stream_epoch_key(symbol))
    current_epoch = current.decode() if isinstance(current, bytes) else current
    entries = []
    for entry_id, fields in rows[:limit]:
        offset = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        e = decode_stream_entry(fields, f"{key} {offset}")
        entries.append(
            TapeEntry(
                offset=offset,
                seq=e.seq,
                trades=[TradeOut.model_validate(to_builtins(t)) for t in e.trades],
                cancelled=[TradeOut.model_validate(to_builtins(t)) for t in e.cancelled],
            )
        )
    oldest = entry_order(first[0][0]) if first else None
    complete = True
    if epoch is not None and epoch != current_epoch:
        complete = False
    elif after is not None:
        complete = await holds_after(client, key, after)
    elif since is not None:
        complete = oldest is not None and oldest[0] <= since * 1000
    return Tape(
        symbol=symbol,
        epoch=current_epoch,
        entries=entries,
        next=entries[-1].offset if len(rows) > limit else None,
        complete=complete,
    )


# -- footprint, bars, indicators --------------------------------------------------------------


@router.get("/api/footprint/{symbol}", response_model=Ladder, tags=["footprint"])
async def footprint(ctx: Ctx, _: Who, symbol: SymbolPath) -> Ladder:
    """The rolling footprint ladder: every live price level, highest first."""
    symbol = known_symbol(symbol)
    levels = [LevelOut(level=lv, **to_builtins(fp)) for lv, fp in await ctx.stores.footprint.ladder(symbol)]
    return Ladder(symbol=symbol, levels=levels)


_BAR_NUMBERS = ("open", "high", "low", "close", "volume", "buy", "sell", "delta", "cum_delta")


def _bar(view: dict[str, Any]) -> BarOut:
    """A bar hash (strings) as numbers; the remaining numeric fields are its indicators."""
    fields = dict(view)
    out: dict[str, Any] = {
        "timeframe": fields.pop("timeframe"),
        "start": fields.pop("start"),
        "footprint": fields.pop("footprint", None),
        "session": fields.pop("session", None),
        "closed": fields.pop("closed", "0") == "1",
    }
    for name in _BAR_NUMBERS:
        if name in fields:
            out[name] = float(fields.pop(name))
    if "trades" in fields:
        out["trades"] = int(fields.pop("trades"))
    indicators = {}
    for name, text in fields.items():
        try:
            indicators[name] = float(text)
        except ValueError:
            continue  # a field a newer ingester added; not a number, so not an indicator
    out["indicators"] = indicators
    return BarOut.model_validate(out)


@router.get("/api/bars/{symbol}", response_model=Bars, tags=["bars"])
async def bars(
    ctx: Ctx,
    _: Who,
    symbol: SymbolPath,
    timeframe: Annotated[str, Query(max_length=8, description="one of SMARTTRADE_TIMEFRAMES")] = "1m",
    count: Annotated[int, Query(ge=1, le=MAX_BARS)] = 20,
) -> Bars:
    """Recent bars, oldest first, each with its footprint metrics (POC, value area, imbalances,
    stacked zones) and the indicator values written when it closed."""
    symbol = known_symbol(symbol)
    frames = parse_timeframes(ctx.settings.smarttrade_timeframes)
    if timeframe not in frames:
        raise ValidationError("timeframe", f"{timeframe!r} is not one of {', '.join(frames)}")
    try:
        views = await AnalyticsViews(ctx.topology, ctx.settings).recent_bars(symbol, timeframe, count)
    except ValueError as exc:  # a bar too wide to show (a bad print): stored data, not the request
        raise DecodeError(f"bars of {symbol}", str(exc)) from None
    spec = spec_for(symbol)
    return Bars(symbol=symbol, timeframe=timeframe, bars=[_bar(v.as_json(spec)) for v in views])


@router.get("/api/indicators/{symbol}", response_model=Indicators, tags=["indicators"])
async def indicators(ctx: Ctx, _: Who, symbol: SymbolPath) -> Indicators:
    """Indicator values: closed bars' (calculations store) and the forming bar's peek."""
    symbol = known_symbol(symbol)
    calcs = await ctx.stores.calc.all(symbol)
    closed = {name: CalcOut.model_validate(to_builtins(calc)) for name, calc in calcs.items()}
    forming = await AnalyticsViews(ctx.topology, ctx.settings).forming_peek(symbol)
    return Indicators(symbol=symbol, closed=closed, forming=forming)


# -- the user's own settings and session ------------------------------------------------------


@router.get("/api/me/settings", response_model=UserSettings, tags=["me"])
async def my_settings(ctx: Ctx, who: Who) -> UserSettings:
    return UserSettings(settings=await ctx.stores.configs.all(who.user))


@router.get("/api/me/settings/{name}", response_model=Setting, tags=["me"])
async def get_setting(ctx: Ctx, who: Who, name: Annotated[str, Path(max_length=64)]) -> Setting:
    value = await ctx.stores.configs.get(who.user, name)
    if value is None:
        raise NotFound(f"setting {name!r} is not set for {who.user}")
    return Setting(name=name, value=value)


@router.put("/api/me/settings/{name}", response_model=Setting, tags=["me"])
async def put_setting(
    ctx: Ctx,
    who: Who,
    name: Annotated[str, Path(max_length=64)],
    value: Annotated[Any, Body(description='any JSON; theme, symbols and alerts are checked ("dark")')],
) -> Setting:
    """Set one setting; theme, symbols (a watchlist) and alerts must have their contract shape."""
    await ctx.stores.configs.set(who.user, name, value)
    return Setting(name=name, value=await ctx.stores.configs.get(who.user, name))


@router.delete("/api/me/settings/{name}", response_model=Deleted, tags=["me"])
async def delete_setting(ctx: Ctx, who: Who, name: Annotated[str, Path(max_length=64)]) -> Deleted:
    return Deleted(deleted=await ctx.stores.configs.remove(who.user, name))


async def _session(ctx: Ctx, user: str) -> SessionOut:
    session = await ctx.stores.sessions.get(user)
    if session is None:
        raise NotFound(f"{user} has no live session")
    return SessionOut.model_validate(to_builtins(session))


@router.get("/api/me/session", response_model=SessionOut, tags=["me"])
async def my_session(ctx: Ctx, who: Who) -> SessionOut:
    """The user's live WebSocket session (404 when no socket is open)."""
    return await _session(ctx, who.user)


# -- admin ------------------------------------------------------------------------------------

UserPath = Annotated[str, Path(min_length=1, max_length=128, description="a user id")]


@router.get("/api/users/{user}/session", response_model=SessionOut, tags=["admin"])
async def user_session(ctx: Ctx, who: Who, user: UserPath) -> SessionOut:
    """A user's session: one's own, or anyone's with an admin token."""
    who.require_user(user)
    return await _session(ctx, user)


@router.delete("/api/users/{user}/session", response_model=Deleted, tags=["admin"])
async def drop_user_session(ctx: Ctx, _: Admin, user: UserPath) -> Deleted:
    """Remove a user's session key (admin only); live sockets write it again on their next change."""
    return Deleted(deleted=await ctx.stores.sessions.close(user))


@router.get("/api/ops/status", response_model=OpsStatus, tags=["admin"])
async def ops_status(ctx: Ctx, _: Admin) -> OpsStatus:
    """Server, memory, clients and keys per store (admin only)."""
    return await gw_health.ops_status(ctx)


# -- public: metrics and health ---------------------------------------------------------------


def _watcher(request: Request, ctx: Ctx) -> Watcher:
    """One watcher per app: rates and fired alerts are counted between scrapes."""
    watcher = getattr(request.app.state, "watcher", None)
    if watcher is None:
        watcher = request.app.state.watcher = Watcher.of(ctx.topology, ctx.settings, ctx.topology.url)
    return watcher


@router.get(
    "/metrics",
    response_class=Response,
    tags=["public"],
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}},
)
async def metrics(request: Request, ctx: Ctx) -> Response:
    """Prometheus metrics (ops/metrics.py; the exporter's names); no token. A Redis that cannot
    be read gives ``redis_up 0``, still a 200."""
    watcher = _watcher(request, ctx)
    try:
        obs = await watcher.poll()
    except (SmartTradeError, RedisError, OSError, TimeoutError):
        obs = None  # Redis down or denied: the scrape still answers
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SmartTradeCollector(lambda: obs, watcher))  # type: ignore[arg-type,return-value]
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/healthz",
    response_model=Health,
    tags=["public"],
    responses={503: {"model": Health, "description": "Redis or the delivery path is down"}},
)
async def healthz(ctx: Ctx) -> JSONResponse:
    """Delivery end to end (no token): Redis answers PING and a canary published through Redis
    reaches this gateway's pub/sub reader in time. 200 when both hold, 503 with the reason."""
    result = await gw_health.health(ctx)
    return JSONResponse(result.model_dump(), status_code=200 if result.ok else 503)
