"""Data commands: status, stats, get, demo, ingest, footprint, indicators."""

from __future__ import annotations

import asyncio
import contextlib
import math
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
import typer
from rich.live import Live
from rich.table import Table
from rich.text import Text

from smarttrade.cli.common import JsonOpt, admin_for, app, confirm, dump, err, fail, human_bytes, out, run
from smarttrade.cli.progress import IngestProgress
from smarttrade.errors import SmartTradeError, ValidationError
from smarttrade.feeds.formats import Format
from smarttrade.ingest.deadletter import check_path
from smarttrade.ingest.defaults import DEFAULT_FUTURE_S, DEFAULT_TOLERANCE_S
from smarttrade.keyspace import FAMILIES, LAST_QUOTE_PREFIX, SPECS, Store
from smarttrade.ops import health, keys
from smarttrade.ops.nodes import store_clients
from smarttrade.redis.nodes import TopologyView
from smarttrade.runtime import Runtime
from smarttrade.stores.instruments import InstrumentRegistry
from smarttrade.symbols import SymbolSpec, check_symbol, parse_specs, spec_for
from smarttrade.symbols import register as register_symbols

if TYPE_CHECKING:
    from smarttrade.analytics.views import BarView
    from smarttrade.demo import DemoStats
    from smarttrade.ingest.run import RunResult

# The engine, feeds and analytics (numpy) are imported inside the commands that use them, so
# `keys`, `status` and the other light commands start quickly.


@app.command()
def status(as_json: JsonOpt = False) -> None:
    """Reachability, server version, mode, memory, clients, and which store is on which db."""

    async def job(rt: Runtime) -> health.Status:
        return await health.status(rt.topology, rt.settings, rt.where)

    st = run(job)
    if as_json:
        dump(msgspec.to_builtins(st))
        return
    mem = st.used_memory_human
    if st.maxmemory:
        mem += f" of {st.maxmemory / 2**20:.0f} MiB ({st.used_memory / st.maxmemory:.1%})"
    summary = Table.grid(padding=(0, 2))
    summary.add_column(no_wrap=True)
    summary.add_column(overflow="fold")  # a narrow terminal folds the URL, never cuts it
    summary.add_row("Redis", st.url)
    summary.add_row("reachable", f"[green]yes[/] (PING {st.ping_ms:.2f} ms)")
    summary.add_row("version", st.version)
    summary.add_row("mode", f"{st.mode}, role {st.role}")
    summary.add_row("memory", f"{mem}, policy {st.maxmemory_policy}")
    summary.add_row("clients", str(st.connected_clients))
    if st.topology is not None and st.topology.master_name:
        summary.add_row("master", f"{st.topology.master_name} at {st.topology.master} (per the sentinels)")
    out.print(summary)
    if st.topology is not None:
        out.print(_topology_table(st.topology))
    table = Table(title="stores")
    for col in ("store", "db", "key pattern", "TTL"):
        table.add_column(col)
    for row in st.stores:
        table.add_row(row.title, str(row.db), row.pattern, f"{row.ttl} s" if row.ttl else "none")
    out.print(table)


def _topology_table(view: TopologyView) -> Table:
    """Each server with its role, slots, primary and link; an unhealthy one in red, with a mark
    that survives a pipe (no colour there)."""
    table = Table(title=f"topology: {view.mode}{' (TLS)' if view.tls else ''}")
    for col in ("node", "role", "slots", "replica of", "link", "health"):
        table.add_column(col)
    for n in view.nodes:
        health_text = Text("ok", style="green") if n.healthy else Text("UNHEALTHY", style="bold red")
        style = "" if n.healthy else "red"
        table.add_row(n.addr, n.role, n.slots or "-", n.of or "-", n.link or "-", health_text, style=style)
    bad = sum(1 for n in view.nodes if not n.healthy)
    if bad:
        table.caption = f"{bad} unhealthy node{'s' if bad > 1 else ''}"
    return table


def _keys_table(rows: list[health.StoreKeys], title: str = "keys per store") -> Table:
    table = Table(title=title)
    table.add_column("store")
    table.add_column("db", justify="right")
    table.add_column("keys", justify="right")
    table.add_column("expiring", justify="right")
    table.add_column("persistent", justify="right")
    for row in rows:
        name = row.title + (
            f" (db shared with {', '.join(row.shared_with)}; counted by prefix)" if row.shared_with else ""
        )
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
        rows = await health.store_keys(rt.topology, rt.settings)
        samples = {}
        if sample:
            admin = admin_for(rt)
            for row in rows:
                clients = store_clients(rt.topology, row.store)
                samples[row.store] = await keys.store_sample(admin, clients, row.store, row.db_keys, sample)
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
    key: Annotated[
        str, typer.Argument(help="Any key `keys` lists, e.g. footprint:DOL:5234500, bar:WIN:1m:EPOCH.")
    ],
    count: Annotated[
        int, typer.Option(min=1, max=10_000, help="Streams, sorted sets, lists: show this many entries.")
    ] = 10,
    as_json: JsonOpt = False,
) -> None:
    """Read one key and print its JSON: contract keys through their store (validated), others by type.

    Hashes (bars, checkpoints, ops) print as objects, sorted sets (bar indexes) as members with
    scores, streams as their newest entries; type, TTL and size go to stderr.
    """
    fam = keys.family_for_key(key)
    if fam is None:
        known = ", ".join(sorted({f"{f.prefix}:" for f in FAMILIES}))
        fail(f"{key!r}: not one of our keys (prefixes: {known})")

    async def job(rt: Runtime) -> tuple[int, keys.RawValue]:
        if fam.prefix in _VALIDATED:
            try:
                kv = await rt.stores.read_key(key)
            except ValueError as exc:
                raise SmartTradeError(str(exc)) from None
            return kv.db, keys.RawValue(key, "string", kv.ttl, int(kv.value is not None), kv.value)
        return rt.topology.db(fam.store), await keys.read_any(
            rt.topology.client(fam.store), rt.url, key, count
        )

    db, kv = run(job)
    store = fam.store.value
    if kv.value is None:
        err.print(f"{key}: not found (store {store}, db {db})", markup=False)
        raise typer.Exit(1)
    if as_json:
        dump(kv.value)
        return
    ttl = "no TTL" if kv.ttl == -1 else f"TTL {kv.ttl} s"
    size = f", {kv.length:,} {'fields' if kv.type == 'hash' else 'entries'}" if kv.type != "string" else ""
    cut = isinstance(kv.value, list) and len(kv.value) < kv.length
    shown = f" ({'newest' if kv.type == 'stream' else 'first'} {len(kv.value):,})" if cut else ""
    err.print(Text(f"{key}  store {store}, db {db}, {kv.type}{size}{shown}, {ttl}", style="dim"))
    out.print_json(data=kv.value)


# Contract keys and the latest-quote index read through their store, which validates the shape.
_VALIDATED = {*(spec.prefix for spec in SPECS.values()), LAST_QUOTE_PREFIX}


def _symbols(text: str) -> list[str]:
    symbols = [s.strip().upper() for s in text.split(",") if s.strip()]
    if not symbols:
        raise typer.BadParameter("no symbol given; e.g. --symbols DOL,WIN", param_hint="--symbols")
    try:
        for s in symbols:
            spec_for(check_symbol(s))
    except SmartTradeError as exc:
        raise typer.BadParameter(str(exc)) from None
    return symbols


def _finite(option: str, value: float | None, positive: bool = False) -> None:
    """Typer's ranges let nan and inf through (every comparison with nan is false)."""
    if value is None:
        return
    if not math.isfinite(value):
        raise typer.BadParameter(f"must be a finite number (got {value})", param_hint=option)
    if positive and value <= 0:
        raise typer.BadParameter(f"must be a positive number of seconds (got {value:g})", param_hint=option)


@app.command()
def demo(
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds and print a summary.")
    ] = None,
    symbols: Annotated[str, typer.Option(help="Comma-separated symbols.")] = "DOL,WDO,WIN",
    rate: Annotated[float, typer.Option(min=0.1, max=100_000, help="Trades/s per symbol.")] = 50,
    seed: Annotated[
        int,
        typer.Option(
            min=0,
            help="Random seed: on an empty Redis the same seed repeats the feed (else it walks on).",
        ),
    ] = 1,
) -> None:
    """Run the demo: a live synthetic B3 feed through the ingest engine, and a demo user.

    Uses a private Redis unless REDIS_URL is set.
    """
    from smarttrade.demo import BACKFILL_S, DemoStats, run_demo

    _finite("--duration", duration, positive=True)
    _finite("--rate", rate)
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
                rt.topology,
                rt.settings,
                rt.stores,
                symbol_list,
                rate,
                duration,
                lambda st: live.update(line(st)),
                seed,
                result,
                on_dashboard=lambda url: out.print(f"dashboard: {url}", markup=False, highlight=False),
            )
        keys = await health.store_keys(rt.topology, rt.settings)
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
    rate: Annotated[float, typer.Option(min=0.1, help="Synthetic: mean trades/s per symbol.")] = 50.0,
    count: Annotated[
        int | None,
        typer.Option(min=1, help="Synthetic: replay this many trades (default: endless live feed)."),
    ] = None,
    seed: Annotated[int, typer.Option(min=0, help="Synthetic: random seed; same seed, same trades.")] = 1,
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
        list[str] | None,
        typer.Option(
            help="Extra instrument ROOT:TICK:QTY_DECIMALS[:SCALE][@ZONE[:SESSIONS]] (repeat); "
            "registered in Redis (smarttrade symbols)."
        ),
    ] = None,
    tolerance: Annotated[
        float, typer.Option(min=0, help="Seconds a trade may arrive out of order.")
    ] = DEFAULT_TOLERANCE_S,
    future_tolerance: Annotated[
        float,
        typer.Option(
            min=0,
            help="Seconds a trade may be ahead of its symbol's recent trades before it needs the "
            "next trade to confirm it (else it is an outlier, dead-lettered).",
        ),
    ] = DEFAULT_FUTURE_S,
    source: Annotated[
        str | None, typer.Option(help="Source name (default: found by the input's content).")
    ] = None,
    dead_letter: Annotated[Path, typer.Option(help="Where rejected lines go (JSON lines).")] = Path(
        "deadletter.jsonl"
    ),
    reset: Annotated[
        bool,
        typer.Option(
            help="Start the source over: delete its symbols' data, bars and checkpoints (asks first)."
        ),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="With --reset: do not ask.")] = False,
    duration: Annotated[float | None, typer.Option(min=0, help="Stop after this many seconds.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Ingest trades into every store: files of a known layout, or the synthetic B3 feed.

    Resumes from its checkpoints after any stop: nothing is lost and nothing counted twice. A
    file is known by its content: moved, copied or renamed it resumes; grown, it continues.
    """
    from smarttrade.feeds.synthetic import synthetic_symbols
    from smarttrade.ingest.run import TooManyRejects, reset_plan, resolve_source, run_leased
    from smarttrade.ingest.sources import file_feed, synthetic_feed

    declared: list[SymbolSpec] = []
    for option, value in (("--rate", rate), ("--duration", duration), ("--tolerance", tolerance)):
        _finite(option, value)
    if symbol_spec:
        try:
            for text in symbol_spec:
                declared += register_symbols(text, " (--symbol-spec)")
        except SmartTradeError as exc:
            raise typer.BadParameter(str(exc), param_hint="--symbol-spec") from None
    pace = _speed(speed)
    try:
        check_path(dead_letter)  # before anything is touched
        if synthetic:
            if files:
                raise typer.BadParameter("give files or --synthetic, not both")
            day = date.fromisoformat(start_day) if start_day else None
            roots = _symbols(symbols)
            names = synthetic_symbols(roots, day or date.today(), tickers)
            feed = synthetic_feed(names, seed, count, rate, day, session, source)
            claim: list[str] | None = names  # the symbols this ingester leases (ingest/lease.py)
            if count is None:
                pace = None  # the live feed keeps its own clock
        else:
            if not files or fmt is None:
                raise typer.BadParameter("give --format and FILE..., or --synthetic")
            keep = {s.strip() for s in only.split(",")} if only else None
            feed = file_feed(fmt, files, source, symbol, keep, tolerance, future_tolerance)
            claim = [symbol] if symbol else sorted(keep) if keep else None  # None: all the files hold
    except ValidationError as exc:
        fail(str(exc), 2)
    except (SmartTradeError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from None

    async def job(rt: Runtime) -> tuple[RunResult | None, str]:
        err.print(f"Redis: {rt.where}", markup=False, highlight=False)
        if reset:
            symbols = await reset_plan(rt.topology, rt.settings, feed)
            what = ", ".join(symbols) if symbols else "no symbols yet"
            plan = (
                f"--reset starts source {feed.name} over: it deletes the market data, bars, "
                f"indicators and checkpoints (of every source) of {what}, then ingests the input "
                "from its start."
            )
            if yes:
                err.print(plan, markup=False, highlight=False)
            elif not confirm(f"{plan} Go on?"):
                return None, "nothing changed"
        else:
            await resolve_source(rt.topology, rt.settings, feed)
        # the instruments this source is ingested with: registered, so later commands know them
        mine = [*parse_specs(rt.settings.smarttrade_symbols), *declared]
        for spec in await InstrumentRegistry(rt.topology).register(mine):
            err.print(f"registered {spec.declaration} (smarttrade symbols)", markup=False, highlight=False)
        err.print(f"source {feed.name}", markup=False, highlight=False)
        with IngestProgress(err, "ingest", feed.total) as bar:
            try:
                result = await run_leased(
                    rt.topology,
                    rt.settings,
                    feed,
                    claim,
                    dead_letter,
                    speed=pace,
                    reset=reset,
                    duration=duration,
                    on_progress=bar.update,
                    on_wait=bar.wait,
                )
            except TooManyRejects as exc:
                return exc.result, str(exc)
        return result, ""

    result, failure = run(job)
    if result is None:
        fail(failure, 1)
    if as_json:
        dump(ingest_json(result, failure))
    else:
        out.print(_ingest_summary(result, str(dead_letter)))
    if failure:
        fail(failure, 1)


def ingest_json(result: RunResult, failure: str = "") -> dict[str, Any]:
    """`ingest --json`: stable fields, documented in docs/ingest.md."""
    st = result.stats
    return {
        "source": result.source,
        "trades": st.trades,
        "cancels": st.cancels,
        "rejected": result.rejected,
        "reasons": dict(sorted(result.reasons.items(), key=lambda kv: -kv[1])),
        "reason_examples": result.examples,
        "skipped": result.skipped,
        "resumed": st.resumed,
        "started_over": result.started_over,
        "commits": st.commits,
        "skipped_commits": st.skipped_commits,
        "max_batch": st.max_batch,
        "repaired": st.repaired,
        "missed_cancels": st.missed_cancels,
        "abandoned": st.abandoned,
        "restarts": result.restarts,
        "elapsed_s": round(st.elapsed, 3),
        "failed": failure or None,
    }


def _ingest_summary(result: RunResult, dead_letter: str | None) -> Table:
    """The end-of-run table; reasons whole (a cut reason hides its fix)."""
    st = result.stats
    table = Table(title="ingest summary", show_header=False)
    table.add_column(justify="right", no_wrap=True)
    table.add_column(overflow="fold")
    rows = [
        ("source", result.source),
        ("trades committed", f"{st.trades:,}"),
        ("cancels applied", f"{st.cancels:,}"),
        ("rejected", f"{result.rejected:,}"),
        ("skipped (instruments not tracked)", f"{result.skipped:,}"),
        ("already committed (resumed)", f"{st.resumed:,}"),
        ("commits", f"{st.commits:,} (max batch {st.max_batch:,} trades)"),
        ("elapsed", f"{st.elapsed:.2f} s ({st.trades / max(st.elapsed, 1e-9):,.0f} trades/s)"),
    ]
    if result.started_over:
        rows.append(("started over (accepted lines changed)", ", ".join(result.started_over)))
    if st.skipped_commits:
        rows.append(("commits already applied", f"{st.skipped_commits:,}"))
    if st.repaired or st.missed_cancels:
        rows.append(("corrupt keys replaced", f"{st.repaired:,}"))
        rows.append(("cancels with no trade left", f"{st.missed_cancels:,}"))
    if result.restarts:
        rows.append(("restarts from checkpoints", str(result.restarts)))
    for reason, count in sorted(result.reasons.items(), key=lambda kv: -kv[1]):
        example = result.examples.get(reason, reason)
        rows.append((f"rejected: {count:,}", example if example == reason else f"{reason} (e.g. {example})"))
    if result.rejected and dead_letter:
        rows.append(("dead letters", dead_letter))
    for name, value in rows:
        table.add_row(name, value)
    return table


@app.command()
def footprint(
    symbol: Annotated[str, typer.Argument(help="A symbol, e.g. WIN or WINZ25.")],
    tf: Annotated[str, typer.Option("--tf", help="Timeframe (one of SMARTTRADE_TIMEFRAMES).")] = "1m",
    bars: Annotated[int, typer.Option(min=1, max=500, help="How many recent bars.")] = 1,
    as_json: JsonOpt = False,
) -> None:
    """The footprint ladder of recent bars: bid x ask per level, delta, POC, value area, imbalances."""
    from smarttrade.analytics.views import AnalyticsViews
    from smarttrade.cli.views import ladder

    symbol = symbol.upper()

    async def job(rt: Runtime) -> list[BarView]:
        try:
            return await AnalyticsViews(rt.topology, rt.settings).recent_bars(symbol, tf, bars)
        except ValueError as exc:
            raise SmartTradeError(str(exc)) from None

    views = run(job)
    spec = spec_for(symbol)
    if as_json:
        dump([v.as_json(spec) for v in views])
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
    from smarttrade.analytics.views import AnalyticsViews
    from smarttrade.cli.views import indicator_table

    symbol = symbol.upper()

    async def job(rt: Runtime) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        closed = msgspec.to_builtins(await rt.stores.calc.all(symbol))
        return closed, await AnalyticsViews(rt.topology, rt.settings).forming_peek(symbol)

    closed, peek = run(job)
    if as_json:
        dump({"closed": closed, "forming": peek})
        return
    if not closed:
        err.print(f"no indicators for {symbol} yet (they follow closed bars of its sessions)", markup=False)
        raise typer.Exit(1)
    out.print(indicator_table(symbol, closed, peek))
