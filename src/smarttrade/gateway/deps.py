"""FastAPI dependencies: who is asking (a token as ``Authorization: Bearer`` or ``?token=``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from smarttrade.gateway.auth import Identity
from smarttrade.gateway.context import GatewayContext


def context(request: Request) -> GatewayContext:
    return request.app.state.ctx


def token_of(authorization: str | None, query_token: str | None) -> str | None:
    """The token a request or a WebSocket handshake carries; the header wins."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        return value.strip() if scheme.lower() == "bearer" else None
    return query_token


def identity(request: Request) -> Identity:
    ctx: GatewayContext = request.app.state.ctx
    token = token_of(request.headers.get("authorization"), request.query_params.get("token"))
    return ctx.tokens.verify(token)


Ctx = Annotated[GatewayContext, Depends(context)]
Who = Annotated[Identity, Depends(identity)]
