"""FastAPI dependencies: who is asking (a token as ``Authorization: Bearer`` or ``?token=``).

The two are declared as OpenAPI security schemes, so /openapi.json says how to authenticate and a
tool such as schemathesis can send a token.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer

from smarttrade.gateway.auth import Identity
from smarttrade.gateway.context import GatewayContext

_bearer = HTTPBearer(auto_error=False, description="A token from `smarttrade token create USER`")
_query = APIKeyQuery(name="token", auto_error=False, description="The same token, for browsers")


def context(request: Request) -> GatewayContext:
    return request.app.state.ctx


def token_of(authorization: str | None, query_token: str | None) -> str | None:
    """The token a request or a WebSocket handshake carries; the header wins."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        return value.strip() if scheme.lower() == "bearer" else None
    return query_token


def identity(
    request: Request,
    _header: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None,
    _token: Annotated[str | None, Depends(_query)] = None,
) -> Identity:
    ctx: GatewayContext = request.app.state.ctx
    token = token_of(request.headers.get("authorization"), request.query_params.get("token"))
    return ctx.tokens.verify(token)


def admin(who: Annotated[Identity, Depends(identity)]) -> Identity:
    who.require_admin()
    return who


Ctx = Annotated[GatewayContext, Depends(context)]
Who = Annotated[Identity, Depends(identity)]
Admin = Annotated[Identity, Depends(admin)]
