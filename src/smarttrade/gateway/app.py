"""The one ASGI app: HTTP API, WebSocket /ws and the dashboard on one port (DESIGN.md §6).

create_app wires the parts; each lives in its own module: api (HTTP routes), ws and hub (the
WebSocket protocol and fan-out), alerts (price alerts), errors (the edge's error mapping), and
static/ (the page).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from smarttrade import __version__
from smarttrade.gateway import api, errors, ws
from smarttrade.gateway.context import GatewayContext
from smarttrade.gateway.hub import Hub


def create_app(ctx: GatewayContext) -> FastAPI:
    if ctx.hub is None:
        ctx.hub = Hub(ctx.settings, ctx.topology, ctx.stores, ctx.gateway_id)
    services: list = [ctx.hub]  # the alert engine joins as it lands

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        for s in services:
            await s.start()
        try:
            yield
        finally:
            for s in reversed(services):
                await s.stop()

    app = FastAPI(title="Smart-Trade gateway", version=__version__, lifespan=lifespan)
    app.state.ctx = ctx
    errors.install(app)
    app.include_router(api.router)
    app.include_router(ws.router)
    return app
