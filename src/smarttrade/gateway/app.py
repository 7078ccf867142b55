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
from smarttrade.gateway import alerts, alerts_api, api, errors, ws
from smarttrade.gateway.context import GatewayContext


def create_app(ctx: GatewayContext) -> FastAPI:
    services: list = []  # filled by the hub and the alert engine as they land
    if getattr(ctx, "hub", None) is not None:  # the alert engine listens through the hub
        services.append(alerts.AlertEngine(ctx.stores.configs.alerts, ctx.hub))  # type: ignore[attr-defined]

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
    app.include_router(alerts_api.router)
    return app
