"""Instruments: list what this installation knows, register one, guess one from a file."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.table import Table

from smarttrade.cli.common import JsonOpt, app, dump, err, fail, out, run_async
from smarttrade.errors import SmartTradeError
from smarttrade.feeds.formats import Format
from smarttrade.ingest.defaults import GUESS_MAX_LINES
from smarttrade.runtime import Runtime, connect
from smarttrade.settings import Settings, load_settings
from smarttrade.stores.instruments import InstrumentRegistry
from smarttrade.symbols import BUILTIN, SPEC_SYNTAX, SymbolSpec, parse_spec, parse_specs

T = TypeVar("T")
NUMBERS = ("trades", "tick", "qty decimals", "price scale")  # right-aligned; no column is ever cut

symbols_app = typer.Typer(
    help="Instruments: the built-in B3 contracts and those registered in Redis (list, add, guess).",
    invoke_without_command=True,
)
app.add_typer(symbols_app, name="symbols")


def _run(job: Callable[[Runtime, Settings], Awaitable[T]]) -> T:
    """Connect without declaring SMARTTRADE_SYMBOLS first: these commands compare it with the
    registry (and may replace a registered instrument) instead of refusing to start."""

    async def main() -> T:
        settings = load_settings()
        async with connect(settings.model_copy(update={"smarttrade_symbols": ""})) as rt:
            return await job(rt, settings)

    return run_async(main)


def _row(spec: SymbolSpec, source: str) -> dict[str, object]:
    return {
        "root": spec.root,
        "declaration": spec.declaration,
        "tick": f"{spec.tick}",
        "price_scale": spec.price_scale,
        "qty_decimals": spec.qty_decimals,
        "calendar": spec.calendar_text,
        "source": source,
    }


@symbols_app.callback()
def symbols_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List the instruments: built-in B3 contracts, the ones registered in Redis, and any in
    SMARTTRADE_SYMBOLS (and whether they agree with the registry)."""
    if ctx.invoked_subcommand is not None:
        return

    async def job(rt: Runtime, settings: Settings) -> list[dict[str, object]]:
        registered = await InstrumentRegistry(rt.topology).read()
        rows = [_row(spec, "built-in") for spec in BUILTIN.values()]
        rows += [_row(spec, "registered") for spec in registered.values()]
        for spec in parse_specs(settings.smarttrade_symbols):
            known = registered.get(spec.root)
            if known is None:
                rows.append(_row(spec, "SMARTTRADE_SYMBOLS, not registered yet (an ingest registers it)"))
            elif known != spec:
                rows.append(
                    _row(spec, f"SMARTTRADE_SYMBOLS: CONFLICTS with the registered {known.declaration}")
                )
        return rows

    rows = _run(job)
    if as_json:
        dump(rows)
        return
    table = Table(title="instruments")
    for col in ("root", "tick", "qty decimals", "price scale", "calendar", "source"):
        table.add_column(col, justify="right" if col in NUMBERS else "left", overflow="fold")
    for r in rows:
        table.add_row(
            str(r["root"]), str(r["tick"]), str(r["qty_decimals"]), str(r["price_scale"]),
            str(r["calendar"]), str(r["source"]),
        )  # fmt: skip
    table.caption = f"declare more as {SPEC_SYNTAX} (docs/instruments.md)"
    out.print(table)


@symbols_app.command("add")
def symbols_add(
    spec_text: Annotated[str, typer.Argument(metavar="SPEC", help=f"{SPEC_SYNTAX}, e.g. BTCUSDT:0.01:5.")],
    replace: Annotated[
        bool,
        typer.Option(
            "--replace", help="Replace a registered instrument of the same root (data stays as written)."
        ),
    ] = False,
) -> None:
    """Register an instrument in Redis, so every command and process knows it."""
    try:
        spec = parse_spec(spec_text)
    except SmartTradeError as exc:
        fail(str(exc), 2)

    async def job(rt: Runtime, settings: Settings) -> bool:
        return bool(await InstrumentRegistry(rt.topology).register([spec], replace=replace))

    changed = _run(job)
    out.print(f"{'registered' if changed else 'already registered:'} {spec.declaration}", markup=False)


@symbols_app.command("guess")
def symbols_guess(
    file: Annotated[Path, typer.Argument(help="A trade file.")],
    fmt: Annotated[Format, typer.Option("--format", help="The file's layout.")],
    symbol: Annotated[str | None, typer.Option(help="MT5: the symbol of the export.")] = None,
    lines: Annotated[
        int, typer.Option(min=1, max=100_000_000, help="Read at most this many lines.")
    ] = GUESS_MAX_LINES,
    as_json: JsonOpt = False,
) -> None:
    """Propose a declaration (tick, quantity decimals) per symbol from the file's own trades."""

    async def job(rt: Runtime, settings: Settings):  # type: ignore[no-untyped-def]
        from smarttrade.ingest.guess import guess  # the parsers (numpy) only when guessing

        return guess(fmt, file, symbol, lines)

    try:
        report = _run(job)
    except SmartTradeError as exc:  # pragma: no cover - run_async turns these into one line
        fail(str(exc))
    if as_json:
        dump(
            {
                "lines": report.lines,
                "rejected": report.rejected,
                "symbols": [g.as_json() for g in report.guesses],
            }
        )
    if not report.guesses:
        top = report.reasons.most_common(1)
        why = f" (most lines: {top[0][0]})" if top else ""
        fail(f"{file}: no trades read as {fmt.value} in {report.lines:,} lines{why}", 1)
    if as_json:
        return
    table = Table(title=f"{file.name}: {report.lines:,} lines read, {report.rejected:,} unreadable")
    for col in ("symbol", "trades", "tick", "qty decimals", "declaration", "status"):
        table.add_column(col, justify="right" if col in NUMBERS else "left", overflow="fold")
    for g in report.guesses[:50]:
        table.add_row(g.symbol, f"{g.trades:,}", g.tick, str(g.qty_decimals), g.declaration, g.status)
    table.caption = (
        "tick: the finest step between traded prices (few trades can make it coarser than the venue's); "
        "calendar: 24 h in UTC unless you add @ZONE[:SESSIONS]"
    )
    out.print(table)
    new = [g for g in report.guesses if g.status == "new"]
    if new:
        err.print(
            f"register with: smarttrade symbols add {new[0].declaration}", markup=False, highlight=False
        )
