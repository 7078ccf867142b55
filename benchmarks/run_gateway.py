"""A gateway process with a chosen gateway id, for the kill -9 test (tests/test_gateway_sessions.py
must know the id to watch its keys; `smarttrade gateway` picks its own, and the fan-out benchmark
uses that): create_app over a standalone topology from the environment (REDIS_URL with an explicit
port, SMARTTRADE_GATEWAY_SECRET), served by uvicorn (websockets-sansio, no deflate) or granian.

    .venv/bin/python benchmarks/run_gateway.py --port 8123 [--server granian] [--gateway-id gw-x]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import uvicorn

from smarttrade.gateway.app import create_app
from smarttrade.gateway.auth import Tokens
from smarttrade.gateway.context import GatewayContext, new_gateway_id
from smarttrade.redis.topology import Topology
from smarttrade.settings import Settings
from smarttrade.stores import Stores
from smarttrade.stores.instruments import InstrumentRegistry


async def _load_instruments(settings: Settings, url: str) -> None:
    topology = Topology.standalone(url, settings)
    try:
        await InstrumentRegistry(topology).load()
    finally:
        await topology.aclose()


def build(gateway_id: str) -> object:
    settings = Settings()
    if not settings.redis_url or not settings.smarttrade_gateway_secret:
        sys.exit("run_gateway: set REDIS_URL (with its port) and SMARTTRADE_GATEWAY_SECRET")
    # in a thread of its own: a server may already run an event loop here (granian's worker)
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _load_instruments(settings, settings.redis_url)).result()
    topology = Topology.standalone(settings.redis_url, settings)  # pools bind to the server's loop
    stores = Stores(topology, settings)
    tokens = Tokens(settings.smarttrade_gateway_secret)
    ctx = GatewayContext(settings, topology, stores, tokens, gateway_id=gateway_id)
    return create_app(ctx)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--server", choices=["uvicorn", "granian"], default="uvicorn")
    ap.add_argument("--gateway-id", default=new_gateway_id())
    args = ap.parse_args()
    if args.server == "granian":  # its own CLI, one worker, calling granian_app in that worker
        os.environ["RUN_GATEWAY_ID"] = args.gateway_id
        exe = str(Path(sys.executable).with_name("granian"))
        cmd = [exe, "--interface", "asgi", "--factory", "--host", "127.0.0.1", "--port", str(args.port)]
        cmd += ["--workers", "1", "--ws", "--log-level", "warning"]
        os.execv(exe, [*cmd, "benchmarks.run_gateway:granian_app"])
    app = build(args.gateway_id)
    uvicorn.run(
        app,  # type: ignore[arg-type]
        host="127.0.0.1",
        port=args.port,
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        log_level="warning",
        lifespan="on",
    )


def granian_app() -> object:
    return build(os.environ.get("RUN_GATEWAY_ID") or new_gateway_id())


if __name__ == "__main__":
    main()
