"""Data commands: status, stats, get, demo, ingest, footprint, indicators."""

from __future__ import annotations

import asyncio
import contextlib
import math
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from rich.live import Live
from rich.table import Table
from rich.text import Text

from smarttrade.analytics.views import BarView, forming_peek, indicator_values, recent_bars
from smarttrade.cli.common import JsonOpt, admin_for, app, dump, err, human_bytes, out, run
from smarttrade.demo import BACKFILL_S, DemoStats, run_demo
from smarttrade.errors import SmartTradeError
from smarttrade.feeds.synthetic import synthetic_symbols
from smarttrade.ingest.run import RunResult, run_feed
from smarttrade.ingest.sources import Format, file_feed, synthetic_feed
from smarttrade.keyspace import Store
from smarttrade.ops import health, keys
from smarttrade.progress import IngestProgress, summary
from smarttrade.runtime import Runtime
from smarttrade.symbols import check_symbol, spec_for
from smarttrade.symbols import register as register_symbols
from smarttrade.views import indicator_table, ladder


@app.command()
def status(as_json: JsonOpt = False) -> None:
    """Reachability, server version, mode, memory, clients, and which store is on which db."""

    async def job(rt: Runtime) -> health.Status:
        return await health.status(rt.pools, rt.settings, rt.where)

    st = run(job)
    if as_json:
        dump(msgspec.to_builtins(st))
        return
    mem = st.used_memory_human
    if st.maxmemory:
        mem += f" of {st.maxmemory / 2**20:.0f} MiB ({st.used_memory / st.maxmemory:.1%})"
    summary = Table.grid(padding=(0, 2))
    summary.add_column(no_wrap=True)
    summary.add_column(no_wrap=True)
    summary.add_row("Redis", st.url)
    summary.add_row("reachable", f"[green]yes[/] (PING {st.ping_ms:.2f} ms)")
    summary.add_row("version", st.version)
    summary.add_row("mode", f"{st.mode}, role {st.role}")
    summary.add_row("memory", f"{mem}, policy {st.maxmemory_policy}")
    summary.add_row("clients", str(st.connected_clients))
    out.print(summary)
    table = Table(title="stores")
    for col in ("store", "db", "key pattern", "TTL"):
        table.add_column(col)
    for row in st.stores:
        table.add_row(row.title, str(row.db), row.pattern, f"{row.ttl} s" if row.ttl else "none")
    out.print(table)


def _keys_table(rows: list[health.StoreKeys], title: str = "keys per store") -> Table:
    table = Table(title=title)
    table.add_column("store")
    table.add_column("db", justify="right")
    table.add_column("keys", justify="right")
    table.add_column("expiring", justify="right")
    table.add_column("persistent", justify="right")
    for row in rows:
        name = row.title + (f" (db shared with {', '.join(row.shared_with)})" if row.shared_with else "")
        table.add_row(name, str(row.db), str(row.keys), str(row.expiring), str(row.persistent))
    table.caption = (
        "from INFO keyspace; db 0 also counts the latest-quote index and ingest checkpoints, "
        "db 1 the trade streams (docs/keyspace.md)"
    )
    return table


@app.command()
def stats(
    sample: Annotated[
        int, typer.Option(min=0, max=100_000, help="Keys per store to sample for memory and TTLs (0: none).")
    ] = 200,
    as_json: JsonOpt = False,
) -> None:
    """Keys per store (INFO keyspace), with memory and TTLs estimated from a SCAN sample."""

    async def job(rt: Runtime) -> tuple[list[health.StoreKeys], dict[Store, keys.StoreSample]]:
        rows = await health.store_keys(rt.pools, rt.settings)
        samples = {}
        if sample:
            admin = admin_for(rt)
            for row in rows:
                client = rt.pools.client(row.db)
                samples[row.store] = await keys.store_sample(admin, client, row.store, row.keys, sample)
        return rows, samples

    rows, samples = run(job)
    if as_json:
        out_rows = []
        for r in rows:
            item = {**msgspec.to_builtins(r), "persistent": r.persistent}
            if r.store in samples:
                item.update(samples[r.store].as_json())
            out_rows.append(item)
        dump(out_rows)
        return
    out.print(_keys_table(rows))
    if samples:
        out.print(_sample_table(samples, sample))


def _sample_table(samples: dict[Store, keys.StoreSample], size: int) -> Table:
    table = Table(title=f"memory and TTLs, estimated from up to {size} keys per store")
    for col in ("store", "sampled", "memory (estimate)", "TTL left: median", "no TTL (should have)"):
        table.add_column(col, justify="left" if col == "store" else "right")
    for store, smp in samples.items():
        mem = "n/a (MEMORY denied)" if smp.memory is None else human_bytes(smp.memory.estimate_bytes)
        table.add_row(store.value, f"{smp.ttl.keys:,}", mem, smp.median_ttl_label(), f"{smp.ttl.missing:,}")
    table.caption = "MEMORY USAGE over a SCAN sample, scaled to the db's key count: an estimate"
    return table


@app.command()
def get(
    key: Annotated[str, typer.Argument(help="A contract key, e.g. footprint:DOL:5234500.")],
    as_json: JsonOpt = False,
) -> None:
    """Read one key through the store its prefix names and print the decoded JSON."""

    async def job(rt: Runtime) -> Any:
        try:
            return await rt.stores.read_key(key)
        except ValueError as exc:
            raise SmartTradeError(str(exc)) from None

    kv = run(job)
    if kv.value is None:
        err.print(f"{key}: not found (store {kv.store.value}, db {kv.db})", markup=False)
        raise typer.Exit(1)
    if as_json:
        dump(kv.value)
        return
    ttl = "no TTL" if kv.ttl == -1 else f"TTL {kv.ttl} s"
    err.print(Text(f"{key}  store {kv.store.value}, db {kv.db}, {ttl}", style="dim"))
    out.print_json(data=kv.value)


def _symbols(text: str) -> list[str]:
    symbols = [s.strip().upper() for s in text.split(",") if s.strip()]
    try:
        for s in symbols:
            spec_for(check_symbol(s))
    except SmartTradeError as exc:
        raise typer.BadParameter(str(exc)) from None
    return symbols


@app.command()
def demo(
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds and print a summary.")
    ] = None,
    symbols: Annotated[str, typer.Option(help="Comma-separated symbols.")] = "DOL,WDO,WIN",
    rate: Annotated[float, typer.Option(min=0.1, max=100_000, help="Trades/s per symbol.")] = 50,
    seed: Annotated[int, typer.Option(help="Random seed, for a repeatable feed.")] = 1,
) -> None:
    """Run the demo: a live synthetic B3 feed through the ingest engine, and a demo user.

    Uses a private Redis unless REDIS_URL is set.
    """
    symbol_list = _symbols(symbols)

    async def job(rt: Runtime) -> tuple[DemoStats, list[health.StoreKeys]]:
        out.print(f"Redis: {rt.where}", markup=False, highlight=False)
        port = rt.url.rsplit(":", 1)[-1].split("/")[0]
        if rt.embedded is not None:
            out.print(
                f"try:   redis-cli -p {port} -n 2 --scan --pattern 'footprint:*'",
                markup=False,
                highlight=False,
            )
        stop = "Ctrl-C to stop" if duration is None else f"stops after {duration:g} s"
        out.print(
            f"back-filling up to the last {BACKFILL_S / 3600:g} h at full speed, then feeding "
            f"{', '.join(symbol_list)} live at ~{rate:g} trades/s each ({stop})"
        )

        def line(st: DemoStats) -> Text:
            ing = st.ingest
            text = Text(
                f"{st.elapsed:6.1f} s  {ing.trades:>9,} trades  {ing.trades / max(st.elapsed, 1e-9):>8,.0f}/s"
                f"  {ing.commits:>7,} commits  lag {ing.lag_ms:,.1f} ms"
            )
            if st.backfill_trades and ing.trades < st.backfill_trades:
                text.append(f"  back-filling {st.backfill_trades:,} trades", style="cyan")
            if st.waiting:
                text.append(f"  {st.waiting}", style="bold yellow")
            if st.refused:
                text.append(f"  {st.refused} writes refused: Redis out of memory", style="bold red")
            return text

        result = DemoStats()
        with (
            Live(line(result), console=out, refresh_per_second=4, transient=True) as live,
            contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError),
        ):
            await run_demo(
                rt.pools,
                rt.settings,
                rt.stores,
                symbol_list,
                rate,
                duration,
                lambda st: live.update(line(st)),
                seed,
                result,
            )
        keys = await health.store_keys(rt.pools, rt.settings)
        return result, keys

    result, keys = run(job)
    ing = result.ingest
    past = (
        f"{result.backfilled:,} back-filled from the last {_span(result.backfill_s)} at full speed, "
        f"then {result.live_trades:,} live"
        if result.backfill_s
        else "none back-filled (an earlier demo's data is that recent)"
    )
    out.print(
        f"done: {ing.trades:,} trades in {result.elapsed:.1f} s through the ingest engine ({past}), "
        f"{ing.commits:,} commits (largest {ing.max_batch:,} trades), {result.refused} demo writes refused"
    )
    if ing.abandoned:
        out.print(f"{ing.abandoned:,} trades not committed: Redis could not take them in time", style="red")
    if result.last_refusal:
        out.print(result.last_refusal, style="red", markup=False)
    out.print(_keys_table(keys, "keys per store at the end of the demo"))


def _span(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


Speed = Annotated[
    str,
    typer.Option(help="'max' (as fast as possible) or a multiple of real time, e.g. 1 or 10."),
]


def _speed(text: str) -> float | None:
    if text.strip().lower() == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is neither 'max' nor a number", param_hint="--speed") from None
    if not (value > 0 and math.isfinite(value)):
        raise typer.BadParameter("must be a positive number", param_hint="--speed")
    return value


@app.command()
def ingest(
    files: Annotated[
        list[Path] | None, typer.Argument(help="Trade files, read in order.", show_default=False)
    ] = None,
    fmt: Annotated[Format | None, typer.Option("--format", help="The files' layout.")] = None,
    synthetic: Annotated[
        bool, typer.Option("--synthetic", help="Generate B3 trades instead of reading files.")
    ] = False,
    symbols: Annotated[
        str, typer.Option(help="Synthetic: comma-separated roots or tickers.")
    ] = "DOL,WDO,WIN",
    tickers: Annotated[
        bool, typer.Option(help="Synthetic: trade front-month tickers (WINZ25) for roots.")
    ] = False,
    rate: Annotated[float, typer.Option(min=0.1, help="Synthetic: mean trades/s per symbol.")] = 20.0,
    count: Annotated[
        int | None,
        typer.Option(min=1, help="Synthetic: replay this many trades (default: endless live feed)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Synthetic: random seed; same seed, same trades.")] = 1,
    start_day: Annotated[
        str | None, typer.Option(help="Synthetic replay: first session day, YYYY-MM-DD (default today).")
    ] = None,
    session: Annotated[
        str, typer.Option(help="Synthetic replay: session hours in America/Sao_Paulo, or 'always'.")
    ] = "09:00-18:25",
    speed: Speed = "max",
    symbol: Annotated[str | None, typer.Option(help="MT5: the symbol of the export.")] = None,
    only: Annotated[str | None, typer.Option(help="B3: keep these instruments, skip the rest.")] = None,
    symbol_spec: Annotated[
        list[str] | None, typer.Option(help="Extra instrument ROOT:TICK:QTY_DECIMALS[:SCALE] (repeat).")
    ] = None,
    tolerance: Annotated[float, typer.Option(min=0, help="Seconds a trade may arrive out of order.")] = 5.0,
    source: Annotated[str | None, typer.Option(help="Checkpoint name (default: from the input).")] = None,
    dead_letter: Annotated[Path, typer.Option(help="Where rejected lines go (JSON lines).")] = Path(
        "deadletter.jsonl"
    ),
    reset: Annotated[bool, typer.Option(help="Forget this source's checkpoints and start over.")] = False,
    duration: Annotated[float | None, typer.Option(min=0, help="Stop after this many seconds.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Ingest trades into every store: files of a known layout, or the synthetic B3 feed.

    Resumes from its checkpoints after any stop: nothing is lost and nothing counted twice.
    """
    if symbol_spec:
        try:
            for text in symbol_spec:
                register_symbols(text)
        except SmartTradeError as exc:
            raise typer.BadParameter(str(exc), param_hint="--symbol-spec") from None
    pace = _speed(speed)
    try:
        if synthetic:
            if files:
                raise typer.BadParameter("give files or --synthetic, not both")
            day = date.fromisoformat(start_day) if start_day else None
            roots = _symbols(symbols)
            names = synthetic_symbols(roots, day or date.today(), tickers)
            feed = synthetic_feed(names, seed, count, rate, day, session, source)
            if count is None:
                pace = None  # the live feed keeps its own clock
        else:
            if not files or fmt is None:
                raise typer.BadParameter("give --format and FILE..., or --synthetic")
            keep = {s.strip() for s in only.split(",")} if only else None
            feed = file_feed(fmt, files, source, symbol, keep, tolerance)
    except (SmartTradeError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from None

    async def job(rt: Runtime) -> RunResult:
        err.print(f"Redis: {rt.where}", markup=False, highlight=False)
        err.print(f"source {feed.name}", markup=False, highlight=False)
        with IngestProgress(err, "ingest", feed.total) as bar:
            return await run_feed(
                rt.pools,
                rt.settings,
                feed,
                dead_letter,
                speed=pace,
                reset=reset,
                duration=duration,
                on_progress=bar.update,
                on_wait=bar.wait,
            )

    result = run(job)
    if as_json:
        stats = dict(vars(result.stats), elapsed=result.stats.elapsed)
        dump(
            {
                **stats,
                "rejected": result.rejected,
                "reasons": result.reasons,
                "restarts": result.restarts,
                "skipped": result.skipped,
            }
        )
    else:
        out.print(summary(result, str(dead_letter)))


@app.command()
def footprint(
    symbol: Annotated[str, typer.Argument(help="A symbol, e.g. WIN or WINZ25.")],
    tf: Annotated[str, typer.Option("--tf", help="Timeframe (one of SMARTTRADE_TIMEFRAMES).")] = "1m",
    bars: Annotated[int, typer.Option(min=1, max=500, help="How many recent bars.")] = 1,
    as_json: JsonOpt = False,
) -> None:
    """The footprint ladder of recent bars: bid x ask per level, delta, POC, value area, imbalances."""
    symbol = symbol.upper()

    async def job(rt: Runtime) -> list[BarView]:
        try:
            return await recent_bars(rt.pools, rt.settings, symbol, tf, bars)
        except ValueError as exc:
            raise SmartTradeError(str(exc)) from None

    views = run(job)
    scale = spec_for(symbol).price_scale
    if as_json:
        dump([v.as_json(scale) for v in views])
        return
    if not views:
        err.print(f"no {tf} bars for {symbol} (run an ingest or the demo first)", markup=False)
        raise typer.Exit(1)
    for view in views:
        out.print(ladder(view, symbol))


@app.command()
def indicators(
    symbol: Annotated[str, typer.Argument(help="A symbol, e.g. DOL.")],
    as_json: JsonOpt = False,
) -> None:
    """Current indicator values: closed bars (the calculations store) and the forming bar (peek)."""
    symbol = symbol.upper()

    async def job(rt: Runtime) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        return await indicator_values(rt.stores, symbol), await forming_peek(rt.pools, rt.settings, symbol)

    closed, peek = run(job)
    if as_json:
        dump({"closed": closed, "forming": peek})
        return
    if not closed:
        err.print(f"no indicators for {symbol} yet (they follow closed regular-session bars)", markup=False)
        raise typer.Exit(1)
    out.print(indicator_table(symbol, closed, peek))
