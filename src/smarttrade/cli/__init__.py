"""The ``smarttrade`` command line (Typer + Rich).

Expected failures (Redis unreachable, a bad setting, a bad key) print one line and exit non-zero;
only a bug shows a traceback. Commands live in modules by theme; importing them registers them.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from typer._click import Command  # Typer 0.29 vendors click; get_command builds these
from typer.core import TyperGroup
from typer.main import get_command

from smarttrade import __version__
from smarttrade.cli import config, data, gateway, inspect, maintain, symbols  # noqa: F401 - registers the commands
from smarttrade.cli.common import app, out


def _version(value: bool) -> None:
    if value:
        out.print(f"smarttrade {__version__}", markup=False, highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_version, help="Print the version and exit."),
    ] = False,
) -> None:
    """Smart-Trade real-time market-data layer on Redis."""


def _no_bool_placeholder(command: Command) -> None:
    """Typer prints ``<bool>`` beside every flag (even --help); a flag takes no value, so show none."""
    ctx = typer.Context(command)
    for param in [*command.params, command.get_help_option(ctx)]:
        if param is not None and getattr(param, "is_flag", False):
            param.metavar = ""
    if isinstance(command, TyperGroup):
        for sub in command.commands.values():
            _no_bool_placeholder(sub)


def command() -> Command:
    """The click command behind ``smarttrade``, with the help text fixed as above."""
    built = get_command(app)
    _no_bool_placeholder(built)
    return built


def main() -> None:
    if not sys.stdout.isatty() and not os.environ.get("TERMINAL_WIDTH") and not os.environ.get("COLUMNS"):
        # Help into a pipe or a file: Rich would size it to 80 columns and cut long words
        # (`America/Sao_Paul…`); wide enough that nothing is cut.
        from typer import rich_utils

        rich_utils.MAX_WIDTH = 200
    command()()


__all__ = ["app", "command", "main"]
