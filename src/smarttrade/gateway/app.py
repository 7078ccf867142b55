"""The one ASGI app: HTTP API, WebSocket /ws and the dashboard on one port (DESIGN.md §6).

create_app wires the parts; each lives in its own module: api (HTTP routes), ws and hub (the
WebSocket protocol and fan-out), alerts (price alerts), errors (the edge's error mapping), and
static/ (the page). ``app_from_env`` builds the same app from the environment, for servers that
import their target (granian's workers).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI

from smarttrade import __version__
from smarttrade.errors import SettingsError
from smarttrade.gateway import alerts, alerts_api, api, errors, page, ws
from smarttrade.gateway.auth import Tokens
from smarttrade.gateway.context import GatewayContext, Service
from smarttrade.gateway.hub import Hub
from smarttrade.redis.topology import Topology
from smarttrade.settings import Settings, load_settings
from smarttrade.stores import Stores
from smarttrade.stores.instruments import InstrumentRegistry
from smarttrade.symbols import register as register_symbols


def create_app(ctx: GatewayContext, owned: Sequence[Service] = ()) -> FastAPI:
    """``owned``: services started first and stopped last (the connections app_from_env made)."""
    if ctx.hub is None:
        ctx.hub = Hub(ctx.settings, ctx.topology, ctx.stores, ctx.gateway_id)
    # the alert engine listens through the hub, so it starts after it and stops before it
    services: list[Service] = [*owned, ctx.hub, alerts.AlertEngine(ctx.stores.configs.alerts, ctx.hub)]

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        started: list[Service] = []
        try:
            for s in services:
                await s.start()
                started.append(s)
            yield
        finally:
            for s in reversed(started):
                await s.stop()

    app = FastAPI(title="Smart-Trade gateway", version=__version__, lifespan=lifespan)
    app.state.ctx = ctx
    errors.install(app)
    app.include_router(api.router)
    app.include_router(ws.router)
    app.include_router(alerts_api.router)
    app.include_router(page.router)  # the dashboard at /, its files and its health strip
    return app


def require_secret(settings: Settings) -> str:
    if not settings.smarttrade_gateway_secret:
        raise SettingsError(
            "SMARTTRADE_GATEWAY_SECRET",
            "not set; the gateway signs tokens with it. Make one with: "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))'",
        )
    return settings.smarttrade_gateway_secret


class OwnedTopology:
    """Connections a worker made for itself: the declared instruments loaded on start, the
    pools closed on stop."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology

    async def start(self) -> None:
        await self.topology.ping()
        await InstrumentRegistry(self.topology).load()

    async def stop(self) -> None:
        await self.topology.aclose()


def app_from_env() -> FastAPI:
    """The app from settings alone (granian: ``smarttrade.gateway.app:app_from_env``, factory).

    Needs REDIS_URL (``smarttrade gateway`` sets it to the embedded server it started) and
    SMARTTRADE_GATEWAY_SECRET.
    """
    settings = load_settings()
    secret = require_secret(settings)
    if not settings.redis_url and settings.redis_mode == "standalone":
        raise SettingsError("REDIS_URL", "not set; `smarttrade gateway --server granian` sets it for workers")
    if settings.smarttrade_symbols:
        register_symbols(settings.smarttrade_symbols, " (SMARTTRADE_SYMBOLS)")
    topology = Topology.from_settings(settings, settings.redis_url)
    ctx = GatewayContext(settings, topology, Stores(topology, settings), Tokens(secret))
    return create_app(ctx, owned=[OwnedTopology(topology)])
