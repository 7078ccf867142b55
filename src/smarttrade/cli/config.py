"""User settings (db 5) from the command line: get, set, delete, list, through the validating store.

The same rules as the gateway's API apply (stores/configs.py): a known setting (theme, symbols,
alerts) must have its shape, any value must be JSON within the size cap, names are checked.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import typer

from smarttrade.cli.common import JsonOpt, app, dump, err, out, run
from smarttrade.keyspace import config_key
from smarttrade.runtime import Runtime

config_app = typer.Typer(
    help="User settings (config:USER:SETTING): get, set, delete, list; validated like the API.",
    no_args_is_help=True,
)
app.add_typer(config_app, name="config")

User = Annotated[str, typer.Argument(help="The user id, e.g. u1.", show_default=False)]
Setting = Annotated[str, typer.Argument(help="The setting, e.g. theme, symbols, alerts.", show_default=False)]


def parse_value(text: str) -> Any:
    """JSON when it parses (``'["DOL","WIN"]'``, ``5``, ``'"5"'``); else the text as a string (``dark``)."""
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:
        return text


def _print(value: Any, as_json: bool) -> None:
    if as_json:
        dump(value)
    else:
        out.print_json(data=value)


@config_app.command("get")
def config_get(user: User, setting: Setting, as_json: JsonOpt = False) -> None:
    """Print one setting's value (exit 1 when it is not set)."""

    async def job(rt: Runtime) -> Any:
        return await rt.stores.configs.get(user, setting)

    value = run(job)
    if value is None:
        err.print(f"{config_key(user, setting)}: not set", markup=False, highlight=False)
        raise typer.Exit(1)
    _print(value, as_json)


@config_app.command("set")
def config_set(
    user: User,
    setting: Setting,
    value: Annotated[
        str,
        typer.Argument(
            help='JSON (e.g. \'["DOL","WIN"]\'); a bare word is a string (dark).', show_default=False
        ),
    ],
) -> None:
    """Validate and store one setting (permanent, no TTL); a bad value is refused with the reason."""
    parsed = parse_value(value)

    async def job(rt: Runtime) -> Any:
        await rt.stores.configs.set(user, setting, parsed)
        return await rt.stores.configs.get(user, setting)

    stored = run(job)
    out.print(
        f"{config_key(user, setting)} = {msgspec.json.encode(stored).decode()}", markup=False, highlight=False
    )


@config_app.command("delete")
def config_delete(user: User, setting: Setting) -> None:
    """Delete one setting (exit 1 when it was not set)."""

    async def job(rt: Runtime) -> bool:
        return await rt.stores.configs.remove(user, setting)

    if not run(job):
        err.print(f"{config_key(user, setting)}: not set", markup=False, highlight=False)
        raise typer.Exit(1)
    out.print(f"{config_key(user, setting)} deleted", markup=False, highlight=False)


@config_app.command("list")
def config_list(user: User, as_json: JsonOpt = False) -> None:
    """Every setting of one user, by name (an empty object when there is none)."""

    async def job(rt: Runtime) -> dict[str, Any]:
        return await rt.stores.configs.all(user)

    settings = run(job)
    if as_json:
        dump(settings)
        return
    if not settings:
        err.print(f"user {user} has no settings", markup=False, highlight=False)
        return
    for name, value in settings.items():
        out.print(f"{name} = {msgspec.json.encode(value).decode()}", markup=False, highlight=False)
