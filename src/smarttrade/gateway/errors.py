"""Errors mapped to HTTP codes at the edge (Starlette's exception handlers): the domain raises its
own exceptions; the body is always JSON ``{"code", "message"}`` (docs/gateway.md, Errors).

FastAPI's own failures (a bad query parameter, an unknown route, a wrong method) get the same
shape, so a client parses one kind of error body.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from smarttrade.errors import (
    DecodeError,
    NotFound,
    OutOfMemory,
    RedisUnavailable,
    SmartTradeError,
    UnknownSymbol,
    ValidationError,
)
from smarttrade.gateway.auth import AuthError


class ErrorBody(BaseModel):
    """Every error the gateway answers with."""

    code: str
    message: str


class Unavailable(SmartTradeError):
    """A part the request needs is not there (the delivery path, the pub/sub reader)."""


HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}

# For the routes' OpenAPI description: every error status they may answer with, in one shape.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in {
        401: "no token, or a bad or expired one",
        403: "the token may not do this (another user's data, not admin)",
        404: "unknown symbol, or nothing stored under that name",
        422: "a bad parameter or body; the message names the field",
        503: "Redis cannot be reached",
    }.items()
}


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status)


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    """``("query", "limit")`` -> ``limit``; a body field keeps its path (``body.value``)."""
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("query", "path", "header", "cookie") and len(parts) > 1:
        parts = parts[1:]
    return ".".join(parts) or "request"


# Domain errors -> (HTTP status, code). A handler is found by the exception's class hierarchy,
# so UnknownSymbol (a ValidationError) answers 404 and a plain ValidationError 422.
MAPPED: dict[type[SmartTradeError], tuple[int, str]] = {
    UnknownSymbol: (404, "unknown_symbol"),
    NotFound: (404, "not_found"),
    ValidationError: (422, "invalid"),
    # a stored value that breaks its contract shape (hand-written): ours to fix, said plainly
    DecodeError: (502, "bad_stored_value"),
    RedisUnavailable: (503, "redis_unavailable"),
    OutOfMemory: (503, "redis_full"),
    Unavailable: (503, "unavailable"),
}


def _answer(status: int, code: str) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def handler(_: Request, exc: Exception) -> JSONResponse:
        return error(status, code, str(exc))

    return handler


def install(app: FastAPI) -> None:
    @app.exception_handler(AuthError)
    async def _auth(_: Request, exc: AuthError) -> JSONResponse:
        if exc.forbidden:
            return error(403, "forbidden", str(exc))
        return error(401, "unauthorized", str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        return error(422, "invalid", f"{_field(first['loc'])}: {first['msg']}")

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "error")
        response = error(exc.status_code, code, str(exc.detail))
        response.headers.update(exc.headers or {})
        return response

    for kind, (status, code) in MAPPED.items():
        app.add_exception_handler(kind, _answer(status, code))

    @app.exception_handler(SmartTradeError)
    async def _expected(_: Request, exc: SmartTradeError) -> JSONResponse:
        # the remaining expected failures are Redis-side (a pool exhausted, a refused command)
        return error(503, "redis_error", str(exc))
