"""The ``smarttrade`` command line (Typer + Rich).

Expected failures (Redis unreachable, a bad setting, a bad key) print one line and exit non-zero;
only a bug shows a traceback. Commands live in modules by theme; importing them registers them.
"""

from __future__ import annotations

from smarttrade.cli import data, inspect, maintain, symbols  # noqa: F401 - registers the commands
from smarttrade.cli.common import app


def main() -> None:
    app()


__all__ = ["app", "main"]
