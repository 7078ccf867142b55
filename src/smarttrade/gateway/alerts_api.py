"""/api/me/alerts: a user's price alerts, written through the validating config store with the
index in one step (stores/alerts.py). Errors are domain exceptions (ValidationError, NotFound,
AuthError) mapped to HTTP codes at the edge (gateway/errors.py)."""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import APIRouter, Request, Response

from smarttrade.errors import DecodeError, NotFound, ValidationError
from smarttrade.gateway.deps import Ctx, Who
from smarttrade.gateway.errors import ERROR_RESPONSES
from smarttrade.models import AlertRule, decode, encode
from smarttrade.stores.alerts import AlertState, parse_rules
from smarttrade.stores.configs import MAX_VALUE_BYTES, check_user
from smarttrade.symbols import check_symbol

router = APIRouter(prefix="/api/me/alerts", tags=["alerts"], responses=ERROR_RESPONSES)

_RULE_SCHEMA = msgspec.json.schema(AlertRule)
_RULE_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": _RULE_SCHEMA}}}}


def _view(state: AlertState) -> dict[str, Any]:
    return {
        "symbol": state.symbol,
        **msgspec.to_builtins(state.rule),
        "trigger": state.rule.trigger,
        "expires_at": state.rule.expires_at,
        "state": state.state,
        "armed_at": state.armed_at,
        "last_fired": state.last_fired,
    }


def _symbol(symbol: str) -> str:
    return check_symbol(symbol)  # ValidationError("symbol", ...)


def _rule(symbol: str, body: bytes) -> AlertRule:
    """The body as a rule, by the config store's checks; ValidationError names the field."""
    if len(body) > MAX_VALUE_BYTES:
        raise ValidationError(f"alerts.{symbol}", f"body is {len(body)} bytes; the cap is {MAX_VALUE_BYTES}")
    try:
        rule = decode(AlertRule, body or b"null", f"alerts.{symbol}")
        parse_rules(encode({symbol: rule}))  # ticks for "every"
    except DecodeError as exc:
        raise ValidationError(exc.where, exc.reason) from None
    return rule


async def _one(ctx: Ctx, user: str, symbol: str) -> dict[str, Any]:
    for state in await ctx.stores.configs.alerts.states(user):
        if state.symbol == symbol:
            return _view(state)
    raise NotFound(f"alerts.{symbol}: no alert on this symbol")


@router.get("")
async def list_alerts(ctx: Ctx, who: Who) -> dict[str, Any]:
    """The user's alerts, each with its state: armed, fired (once), waiting (every, until the
    price is a tick back) or expired."""
    return {"alerts": [_view(s) for s in await ctx.stores.configs.alerts.states(check_user(who.user))]}


@router.get("/fired")
async def fired(ctx: Ctx, who: Who) -> dict[str, Any]:
    """The user's fired history, newest first (the last 100, kept 30 days)."""
    return {"fired": await ctx.stores.configs.alerts.fired(check_user(who.user))}


@router.put("/{symbol}", openapi_extra=_RULE_BODY)
async def put_alert(symbol: str, request: Request, ctx: Ctx, who: Who) -> dict[str, Any]:
    """Create or replace the user's alert on ``symbol`` (armed from now)."""
    user, symbol = check_user(who.user), _symbol(symbol)
    rule = _rule(symbol, await request.body())

    def change(rules: dict[str, AlertRule]) -> dict[str, AlertRule]:
        return {**rules, symbol: rule}

    await ctx.stores.configs.alerts.update(user, change)
    return await _one(ctx, user, symbol)


@router.delete("/{symbol}", status_code=204)
async def delete_alert(symbol: str, ctx: Ctx, who: Who) -> Response:
    user, symbol = check_user(who.user), _symbol(symbol)
    found: list[bool] = []

    def change(rules: dict[str, AlertRule]) -> dict[str, AlertRule] | None:
        found.append(symbol in rules)
        rest = {s: r for s, r in rules.items() if s != symbol}
        return rest or None

    await ctx.stores.configs.alerts.update(user, change)
    if not found[-1]:
        raise NotFound(f"alerts.{symbol}: no alert on this symbol")
    return Response(status_code=204)


@router.post("/{symbol}/rearm")
async def rearm(symbol: str, ctx: Ctx, who: Who) -> dict[str, Any]:
    """Arm the alert again from now, whatever its state (a fired "once", a waiting "every")."""
    user, symbol = check_user(who.user), _symbol(symbol)
    await ctx.stores.configs.alerts.rearm(user, symbol)
    return await _one(ctx, user, symbol)
