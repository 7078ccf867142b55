"""What every command shares: the Typer app, the consoles, and ``run`` (errors -> one line)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console

from smarttrade import stopping
from smarttrade.errors import SmartTradeError
from smarttrade.keyspace import Store
from smarttrade.ops.nodes import DATA_ROLES, node_url
from smarttrade.ops.server import Admin
from smarttrade.runtime import Runtime, connect
from smarttrade.settings import load_settings

app = typer.Typer(
    help="Smart-Trade real-time market-data layer on Redis.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Not on a terminal (a pipe, a file, a journal) Rich would size output at 80 columns (or $COLUMNS)
# and cut cells with an ellipsis; there nothing is cut: the width is unbounded.
PIPE_WIDTH = 100_000


def console(stderr: bool = False) -> Console:
    """A console that fits a terminal's width and never cuts a label or value elsewhere."""
    made = Console(stderr=stderr, soft_wrap=True)
    if not made.is_terminal:
        made.width = PIPE_WIDTH
    return made


out = console()
err = console(stderr=True)
T = TypeVar("T")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for machines instead of tables.")]
StoreArg = Annotated[
    Store, typer.Argument(help="The store: quotes, orderflow, footprint, calc, sessions or config.")
]


def admin_for(rt: Runtime) -> Admin:
    """Ops commands talk to the server through the topology's admin client, with its command names.

    On a cluster that client routes keys but has no one server: use it for the names and the URL
    (``admin.on(node_client)``), never for a server-wide command (Admin refuses that)."""
    return Admin(rt.topology.admin, rt.settings, rt.url)


NodeOpt = Annotated[
    str | None,
    typer.Option(
        "--node",
        metavar="HOST:PORT",
        help="Cluster or sentinel: the data node to read, as `smarttrade status` lists it.",
    ),
]


async def one_server_admin(rt: Runtime, command: str, node: str | None = None) -> Admin:
    """The admin of a command that reads one server's own state (INFO, SLOWLOG, LATENCY).

    ``node`` picks a data node of a cluster or sentinel group, through the topology's own client
    (its TLS and credentials); a cluster has no one server, so there it is required."""
    if node is None:
        if rt.topology.mode == "cluster":
            fail(
                f"{command} reads one server: on a cluster give --node HOST:PORT (see `smarttrade status`)", 2
            )
        return admin_for(rt)
    if rt.topology.mode == "standalone":
        fail(f"--node: {command} reads REDIS_URL's server in standalone mode; drop --node", 2)
    nodes = [v.addr for v in (await rt.topology.describe()).nodes if v.role in DATA_ROLES]
    if node not in nodes:
        fail(f"--node: {node!r} is not a data node of this {rt.topology.mode} ({', '.join(nodes)})", 2)
    return Admin(rt.topology.node(node), rt.settings, node_url(node, rt.topology.tls))


# Exit codes of a stop by signal: SIGTERM is how a service manager stops a service (systemctl
# stop), so it is a clean end, exit 0; Ctrl-C (and SIGHUP) keep the shell's 128 + SIGINT.
STOP_EXIT = {signal.SIGTERM: 0, signal.SIGINT: 130, signal.SIGHUP: 130}


def run_async(main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main``; SIGTERM, SIGINT and SIGHUP cancel it, and expected failures become one line.

    A command that handles the stop itself (the demo prints its summary) returns normally; one
    the stop cancels exits with ``STOP_EXIT``: 0 after SIGTERM, 130 after Ctrl-C.
    """
    received: list[signal.Signals] = []

    async def wrapped() -> T:
        # The signals cancel the command instead of killing it, so an embedded server we started
        # is stopped cleanly and the ingest engine's tasks end before the loop closes.
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()

        def stop(sig: signal.Signals) -> None:
            received.append(sig)
            stopping.request(sig.name)  # for the loops, should redis-py swallow the cancel
            task.cancel()
            for each in STOP_EXIT:  # a second one acts at once (Ctrl-C twice: KeyboardInterrupt)
                loop.remove_signal_handler(each)

        stopping.clear()
        for sig in STOP_EXIT:
            loop.add_signal_handler(sig, stop, sig)
        return await main()

    try:
        return asyncio.run(wrapped())
    except SmartTradeError as exc:
        fail(str(exc), exc.exit_code)
    except (KeyboardInterrupt, asyncio.CancelledError):
        sig = received[0] if received else signal.SIGINT
        if sig == signal.SIGTERM:
            err.print("stopped by SIGTERM", markup=False, highlight=False)
        raise typer.Exit(STOP_EXIT[sig]) from None


def run(job: Callable[[Runtime], Awaitable[T]], check: bool = True) -> T:
    """Load settings, connect, run ``job``; expected failures become one line and an exit code.

    ``check=False`` skips the start-up PING, for commands that must run while Redis is down.
    """

    async def main() -> T:
        async with connect(load_settings(), check=check, on_loading=note) as rt:
            return await job(rt)

    return run_async(main)


def note(message: str) -> None:
    """A status line on stderr (stdout stays for results)."""
    err.print(message, markup=False, highlight=False)


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(message, markup=False, highlight=False)
    raise typer.Exit(code)


def dump(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if abs(n) < 1024:
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} GiB"


def confirm(question: str) -> bool:
    """Ask on stderr; no answer (no terminal, end of input) counts as no."""
    if not sys.stdin.isatty():  # `echo y | ...` must not delete: scripts say --yes
        err.print(f"{question} no (stdin is not a terminal; add --yes)", markup=False, highlight=False)
        return False
    try:
        return typer.confirm(question, default=False, err=True)
    except typer.Abort:
        err.print()
        return False
