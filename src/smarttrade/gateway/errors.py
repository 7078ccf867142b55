"""Errors mapped to HTTP codes at the edge (Starlette's exception handlers): the domain raises its
own exceptions; the body is always JSON ``{"code", "message"}``."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from smarttrade.gateway.auth import AuthError


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status)


def install(app: FastAPI) -> None:
    @app.exception_handler(AuthError)
    async def _auth(_: Request, exc: AuthError) -> JSONResponse:
        if exc.forbidden:
            return error(403, "forbidden", str(exc))
        return error(401, "unauthorized", str(exc))
