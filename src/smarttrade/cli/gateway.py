"""Gateway commands: ``gateway`` (serve the HTTP API and /ws) and ``token create``."""

from __future__ import annotations

import asyncio
import os
import signal
from enum import StrEnum
from typing import Annotated

import typer

from smarttrade.cli.common import app, fail, note, out
from smarttrade.errors import SmartTradeError
from smarttrade.settings import Settings, load_settings


class GatewayServer(StrEnum):
    """The ASGI servers the gateway runs on; the fan-out benchmark (docs/benchmarks.md) picks
    the default."""

    uvicorn = "uvicorn"
    granian = "granian"


token_app = typer.Typer(help="Signed tokens for the gateway.", no_args_is_help=True)
app.add_typer(token_app, name="token")


def _settings_and_secret() -> tuple[Settings, str]:
    from smarttrade.gateway.app import require_secret

    try:
        settings = load_settings()
        return settings, require_secret(settings)
    except SmartTradeError as exc:
        fail(str(exc), exc.exit_code)


@app.command()
def gateway(
    host: Annotated[str | None, typer.Option(help="Bind address (SMARTTRADE_GATEWAY_HOST).")] = None,
    port: Annotated[
        int | None,
        typer.Option(min=0, max=65535, help="TCP port, 0 for a free one (SMARTTRADE_GATEWAY_PORT)."),
    ] = None,
    server: Annotated[GatewayServer, typer.Option(help="The ASGI server.")] = GatewayServer.uvicorn,
) -> None:
    """Serve the gateway: the HTTP API, /ws and the dashboard on one port (docs/gateway.md).

    Needs SMARTTRADE_GATEWAY_SECRET. Uses a private Redis unless REDIS_URL is set.
    SIGINT or SIGTERM stop it cleanly (exit 0).
    """
    settings, secret = _settings_and_secret()
    host = host or settings.smarttrade_gateway_host
    port = settings.smarttrade_gateway_port if port is None else port
    if server is GatewayServer.granian:
        _granian(settings, host, port)
        return
    try:
        asyncio.run(_serve(settings, secret, host, port))
    except SmartTradeError as exc:
        fail(str(exc), exc.exit_code)
    note("gateway stopped")


async def _serve(settings: Settings, secret: str, host: str, port: int) -> None:
    from smarttrade.gateway.app import create_app
    from smarttrade.gateway.auth import Tokens
    from smarttrade.gateway.context import GatewayContext
    from smarttrade.gateway.server import Gateway
    from smarttrade.runtime import connect

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with connect(settings, on_loading=note) as rt:
        ctx = GatewayContext(rt.settings, rt.topology, rt.stores, Tokens(secret))
        try:
            gw = Gateway(create_app(ctx), host, port)
        except OSError as exc:
            fail(f"--port/SMARTTRADE_GATEWAY_PORT: cannot listen on {host}:{port}: {exc.strerror}", 2)
        await gw.start()
        out.print(f"gateway {ctx.gateway_id} on {gw.url} (Redis: {rt.where})", markup=False, highlight=False)
        stopped = asyncio.create_task(stop.wait())
        assert gw.task is not None
        await asyncio.wait([stopped, gw.task], return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        await gw.stop()


def _granian(settings: Settings, host: str, port: int) -> None:
    """granian's workers import the app: they get the Redis URL (the embedded server started
    here when REDIS_URL is unset) through the environment."""
    from smarttrade.gateway.server import serve_granian
    from smarttrade.redis.embedded import attach_or_start

    handle = None
    if not settings.redis_url:
        try:
            handle = attach_or_start(settings.smarttrade_data_dir, settings.smarttrade_maxmemory)
        except SmartTradeError as exc:
            fail(str(exc), exc.exit_code)
        os.environ["REDIS_URL"] = handle.url
    try:
        out.print(f"gateway (granian) on http://{host}:{port}", markup=False, highlight=False)
        serve_granian(host, port)
    finally:
        if handle is not None:
            handle.close()
    note("gateway stopped")


@token_app.command("create")
def token_create(
    user: Annotated[str, typer.Argument(help="The user id (letters, digits, _.@-).")],
    admin: Annotated[bool, typer.Option("--admin", help="May act as admin.")] = False,
    ttl: Annotated[str, typer.Option(help="Lifetime: 90s, 30m, 12h, 7d.")] = "12h",
) -> None:
    """Print a token for USER, signed with SMARTTRADE_GATEWAY_SECRET."""
    from smarttrade.gateway.auth import Tokens, parse_ttl

    _, secret = _settings_and_secret()
    try:
        token = Tokens(secret).create(user, admin=admin, ttl_s=parse_ttl(ttl))
    except ValueError as exc:
        fail(str(exc), 2)
    out.print(token, markup=False, highlight=False, soft_wrap=True)
