"""Serving the app: uvicorn in this process (the default; the demo runs it beside the feed), or
granian, whose workers import ``app.app_from_env``.

uvicorn runs with the websockets sans-I/O protocol and per-message deflate off (DESIGN.md §6: one
encoded message shared by every client; compressing it per socket would undo that). Its own
signal handling is switched off: the caller decides what a signal means (the CLI stops the server
cleanly, exit 0; the demo stops the feed first).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from smarttrade.errors import SmartTradeError

FACTORY = "smarttrade.gateway.app:app_from_env"
STARTUP_WAIT_S = 10.0
GRACEFUL_S = 5  # open sockets (dashboards) get this long to close on a stop


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the caller stops us (should_exit); uvicorn would re-raise the signal after


def uvicorn_config(app: FastAPI, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        lifespan="on",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_S,
    )


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: a free one), so the port is known before serving."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP,
    # and without it every response waited ~40 ms for the client's delayed ACK (Nagle)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class Gateway:
    """One uvicorn server over one bound socket: ``await start()``, then ``await stop()``."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        self.sock = bind(host, port)
        self.host = host
        self.port: int = self.sock.getsockname()[1]
        self.server = _Server(uvicorn_config(app, host, self.port))
        self.task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Serve in a task; returns once the app's lifespan has started (or raises why not)."""
        self.task = asyncio.create_task(self.server.serve(sockets=[self.sock]))
        deadline = asyncio.get_running_loop().time() + STARTUP_WAIT_S
        while not self.server.started:
            if self.task.done():
                self.task.result()  # the start-up failure, as raised
                raise SmartTradeError("the gateway stopped while starting (the reason is logged above)")
            if asyncio.get_running_loop().time() > deadline:
                raise SmartTradeError(f"the gateway did not start within {STARTUP_WAIT_S:g} s")
            await asyncio.sleep(0.02)

    async def wait(self) -> None:
        assert self.task is not None
        await self.task

    async def stop(self) -> None:
        self.server.should_exit = True
        if self.task is not None:
            await self.task
        self.sock.close()


def serve_granian(host: str, port: int) -> None:
    """Blocking: granian's workers build the app with app_from_env from the environment."""
    from granian import Granian
    from granian.constants import Interfaces

    server = Granian(FACTORY, address=host, port=port, interface=Interfaces.ASGI, factory=True)
    server.serve()
