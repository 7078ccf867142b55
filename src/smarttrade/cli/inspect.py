"""Inspect and watch: info, keys, ttl, slowlog, latency, monitor, alerts, exporter."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import sys
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
import redis.exceptions as rexc
import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from smarttrade.cli.common import (
    JsonOpt,
    NodeOpt,
    StoreArg,
    app,
    dump,
    err,
    fail,
    human_bytes,
    one_server_admin,
    out,
    run,
)
from smarttrade.cli.progress import counting
from smarttrade.ops import alerts, inspect, keys, published
from smarttrade.ops.backup import newest_age_s
from smarttrade.ops.nodes import primary_admins, store_clients
from smarttrade.ops.sample import Rates, Sample, rates, take_all
from smarttrade.ops.watch import Observation, Watcher
from smarttrade.runtime import Runtime


def watcher_for(rt: Runtime) -> Watcher:
    """monitor's and the exporter's watcher: every primary of a cluster, the one server else."""
    return Watcher.of(rt.topology, rt.settings, rt.url)


LEVEL_STYLE = {alerts.Level.OK: "green", alerts.Level.WARNING: "yellow", alerts.Level.CRITICAL: "bold red"}


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


_BYTES = ("used_memory", "used_memory_rss", "used_memory_peak", "maxmemory", "total_system_memory")


def _info_table(section: str, data: dict[str, Any]) -> Table:
    table = Table(title=f"INFO {section}", show_header=False)
    table.add_column("field", style="cyan", no_wrap=True)
    table.add_column("value")
    for name, value in data.items():
        shown = str(value)
        if name in _BYTES and isinstance(value, int):
            shown = f"{value:,} ({human_bytes(value)})"
        elif isinstance(value, dict):
            shown = ", ".join(f"{k}={v}" for k, v in value.items())
        table.add_row(name, shown)
    return table


def _fragmentation(data: dict[str, Any]) -> Table:
    table = Table(title="fragmentation")
    for col in ("ratio", "value", "what it means"):
        table.add_column(col)
    table.add_row(
        "mem_fragmentation_ratio",
        str(data.get("mem_fragmentation_ratio", "?")),
        "RSS / used: includes freed pages the OS has not taken back; near 1 at rest, high after a purge",
    )
    table.add_row(
        "allocator_frag_ratio",
        str(data.get("allocator_frag_ratio", "n/a (Redis < 4 or not jemalloc)")),
        "jemalloc's own fragmentation: what activedefrag can fix; above 1.2 is worth a look",
    )
    return table


@app.command()
def info(
    sections: Annotated[
        list[str] | None,
        typer.Argument(help="server, clients, memory, stats, persistence, replication (default: all)."),
    ] = None,
    node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """INFO sections as readable tables; memory adds the two fragmentation ratios side by side."""
    wanted = sections or list(inspect.SECTIONS)
    for s in wanted:
        if s not in inspect.SECTIONS:
            raise typer.BadParameter(
                f"{s!r} is not one of {', '.join(inspect.SECTIONS)}", param_hint="SECTIONS"
            )

    async def job(rt: Runtime) -> dict[str, dict[str, Any]]:
        admin = await one_server_admin(rt, "info", node)
        return {s: await inspect.info_section(admin, s) for s in wanted}

    data = run(job)
    if as_json:
        dump(data)
        return
    for section, fields in data.items():
        out.print(_info_table(section, fields))
        if section == "memory":
            out.print(_fragmentation(fields))


Limit = Annotated[int, typer.Option(min=1, max=1_000_000, help="List about this many keys.")]


@app.command("keys")
def keys_cmd(
    store: StoreArg,
    pattern: Annotated[str | None, typer.Option(help="SCAN MATCH pattern, e.g. 'quote:DOL:*'.")] = None,
    limit: Limit = 50,
    cursor: Annotated[int, typer.Option(min=0, help="Continue from the cursor a previous page printed.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Browse a store's keys with their type and TTL: SCAN with a COUNT, streamed page by page.

    Never KEYS. A terminal gets aligned columns; a pipe or file one KEY<Tab>TYPE<Tab>TTL line per
    key (TTL in seconds or "none"); --json one object, written as the scan goes.
    """
    emit = _KeyLines(as_json, out.is_terminal)

    async def job(rt: Runtime) -> tuple[int, int]:
        clients = store_clients(rt.topology, store)
        listed = next_cursor = 0
        emit.start()
        async for page in keys.browse_pages(clients, rt.url, store, pattern, limit, cursor):
            listed += len(page)
            next_cursor = page.cursor
            if not emit.page(page):
                return listed, -1  # the reader went away (`| head`): stop quietly
        emit.end(next_cursor)
        return listed, next_cursor

    listed, next_cursor = run(job)
    if next_cursor < 0:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit's flush
        return
    if next_cursor:
        err.print(
            f"{listed:,} keys; more: smarttrade keys {store.value} --cursor {next_cursor}"
            + (f" --pattern '{pattern}'" if pattern else ""),
            markup=False,
            highlight=False,
        )
    else:
        err.print(f"{listed:,} keys; the scan is complete", markup=False, highlight=False)


class _KeyLines:
    """Writes `keys` output a page at a time: memory stays one page whatever --limit says."""

    def __init__(self, as_json: bool, terminal: bool) -> None:
        self.as_json = as_json
        self.terminal = terminal
        self.first = True
        self.width = 0

    def _write(self, text: str | bytes) -> bool:
        try:
            if isinstance(text, bytes):
                sys.stdout.flush()
                sys.stdout.buffer.write(text)
                sys.stdout.buffer.flush()
            else:
                sys.stdout.write(text)
                sys.stdout.flush()
        except BrokenPipeError:
            return False
        return True

    def start(self) -> None:
        if self.as_json:
            self._write('{"keys": [')

    def page(self, page: keys.KeyPage) -> bool:
        if not len(page):
            return True
        if not self.as_json and not self.terminal:  # the fast path: bytes from the reply
            self.first = False
            return self._write(page.tsv())
        rows = page.rows
        if self.as_json:
            body = msgspec.json.encode(rows).decode()[1:-1]  # one page per line
            text = ("\n" if self.first else ",\n") + body
        else:
            if self.first:  # columns sized on the first page; a longer key pushes, never cut
                self.width = max(len("key"), *(len(r.key) for r in rows))
                out.print(f"{'key':<{self.width}}  {'type':<6}  {'TTL':>9}", style="bold", highlight=False)
            w = self.width
            text = "".join(f"{r.key:<{w}}  {r.type:<6}  {_ttl(r.ttl):>9}\n" for r in rows)
        self.first = False
        return self._write(text)

    def end(self, cursor: int) -> None:
        if self.as_json:
            self._write(f'\n], "cursor": {cursor}}}\n')


def _ttl(ttl: int) -> str:
    return "none" if ttl == -1 else f"{ttl} s"


def ttl_table(report: keys.TtlReport) -> Table:
    table = Table(title=f"TTLs of {report.store.value} ({report.keys:,} keys)")
    table.add_column("TTL left")
    table.add_column("keys", justify="right")
    table.add_column("share", justify="right")
    table.add_column("")
    total = max(1, report.keys)
    rows = [(keys.bucket_label(i), n) for i, n in enumerate(report.buckets)]
    rows += [("none, on purpose", report.persistent), ("none, but should expire", report.missing)]
    for label, n in rows:
        bar = "█" * round(30 * n / total)
        style = "bold red" if label.startswith("none, but") and n else ""
        table.add_row(Text(label, style=style), f"{n:,}", f"{n / total:.1%}", bar)
    return table


@app.command()
def ttl(
    store: StoreArg,
    sample: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many keys (default: all).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """TTL histogram of a store, and the keys that have no TTL but should (fix: `cleanup --apply`)."""

    async def job(rt: Runtime) -> keys.TtlReport:
        clients = store_clients(rt.topology, store)
        with counting(err, f"scanning {store.value}") as tick:
            return await keys.ttl_report(clients, rt.url, store, sample, tick)

    report = run(job)
    if as_json:
        labels = [keys.bucket_label(i) for i in range(len(report.buckets))]
        dump(
            {
                "store": store.value,
                "keys": report.keys,
                "buckets": dict(zip(labels, report.buckets, strict=True)),
                "persistent": report.persistent,
                "missing_ttl": report.missing,
                "missing_examples": report.missing_keys,
                "by_prefix": report.by_family,
            }
        )
        return
    out.print(ttl_table(report))
    if report.missing:
        out.print(f"[red]{report.missing:,} keys have no TTL but should[/], e.g.:")
        for key in report.missing_keys:
            out.print(f"  {key}", markup=False, highlight=False)
        out.print(f"fix: smarttrade cleanup {store.value} --apply")


@app.command("slowlog")
def slowlog_cmd(
    number: Annotated[
        int | None, typer.Argument(min=1, max=10_000, help="Same as --count (the older spelling).")
    ] = None,
    count_opt: Annotated[
        int | None, typer.Option("--count", min=1, max=10_000, help="How many entries [default: 10].")
    ] = None,
    node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The newest slow-log entries (SLOWLOG GET N)."""
    if number is not None and count_opt is not None and number != count_opt:
        fail(f"slowlog: N ({number}) and --count ({count_opt}) disagree; give one", 2)
    count = count_opt or number or 10

    async def job(rt: Runtime) -> tuple[list[inspect.SlowEntry], int]:
        return await inspect.slowlog(await one_server_admin(rt, "slowlog", node), count)

    entries, length = run(job)
    if as_json:
        dump({"length": length, "entries": [_slow(e) for e in entries]})
        return
    table = Table(title=f"slow log ({len(entries)} of {length})")
    for col in ("id", "when (UTC)", "µs", "command", "client"):
        table.add_column(col)
    for e in entries:
        when = datetime.fromtimestamp(e.at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(str(e.id), when, f"{e.micros:,}", Text(e.command), e.client)
    out.print(table)


def _slow(e: inspect.SlowEntry) -> dict[str, Any]:
    return {"id": e.id, "at": e.at, "micros": e.micros, "command": e.command, "client": e.client}


@app.command("latency")
def latency_cmd(
    count: Annotated[int, typer.Option(min=1, max=100_000, help="PING round trips to time.")] = 200,
    node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Client round-trip percentiles (PING), plus LATENCY LATEST and DOCTOR where permitted."""

    async def job(rt: Runtime) -> inspect.Latency:
        return await inspect.latency(await one_server_admin(rt, "latency", node), count)

    lat = run(job)
    if as_json:
        dump(dataclasses.asdict(lat))
        return
    table = Table(title=f"round trip over {lat.samples} PINGs (ms)")
    for col in ("p50", "p90", "p99", "max"):
        table.add_column(col, justify="right")
    table.add_row(*(f"{v:.3f}" for v in (lat.p50_ms, lat.p90_ms, lat.p99_ms, lat.max_ms)))
    out.print(table)
    if lat.unavailable:
        err.print(f"LATENCY: {lat.unavailable}", markup=False)
        return
    if lat.latest:
        events = Table(title="LATENCY LATEST")
        for col in ("event", "when (UTC)", "latest ms", "max ms"):
            events.add_column(col)
        for event, at, latest, worst in lat.latest:
            when = datetime.fromtimestamp(at, UTC).strftime("%H:%M:%S")
            events.add_row(event, when, str(latest), str(worst))
        out.print(events)
    out.print(Text(lat.doctor.strip(), style="dim"))


# -- monitor ---------------------------------------------------------------------------------------


def _checks_table(checks: list[alerts.Check]) -> Table:
    table = Table(title="alerts")
    for col in ("check", "level", "value", "detail"):
        table.add_column(col)
    for c in checks:
        table.add_row(c.name, Text(c.level.label, style=LEVEL_STYLE[c.level]), c.value, Text(c.message))
    return table


def _share(node: Sample) -> str:
    share = node.memory_share
    return "no maxmemory" if share is None else f"{share:.0%}"


def _nodes_table(obs: Observation) -> Table:
    """Each primary's own figures: memory against its own maxmemory (the sum above hides a full
    node), its ops/s, clients, role and replicas."""
    table = Table(title="per primary")
    for col in ("node", "role", "memory", "of maxmemory", "ops/s", "clients", "keys", "replicas"):
        table.add_column(col, justify="left" if col in ("node", "role") else "right")
    for n in obs.sample.members:
        r = obs.node_rates.get(n.node)
        full = n.memory_share is not None and n.memory_share >= 0.9
        table.add_row(
            n.node,
            n.role,
            human_bytes(n.used_memory),
            Text(_share(n), style="bold red" if full else ""),
            f"{r.ops_s:,.0f}" if r else f"{n.ops_per_sec:,}",
            str(n.clients),
            f"{sum(k for k, _e in n.keyspace.values()):,}",
            Text(str(n.replicas), style="" if n.replicas else "yellow"),
        )
    return table


def monitor_view(obs: Observation, where: str) -> Group:
    s, r = obs.sample, obs.rates
    head = Table.grid(padding=(0, 2))
    head.add_column(style="cyan", no_wrap=True)
    head.add_column()
    head.add_row("Redis", f"{where}  up {s.uptime_s // 3600} h {s.uptime_s % 3600 // 60} min")
    used = human_bytes(s.used_memory)
    if s.maxmemory:
        share = s.used_memory / s.maxmemory
        bar = "█" * round(20 * min(share, 1)) + "░" * (20 - round(20 * min(share, 1)))
        used += f" of {human_bytes(s.maxmemory)}  {bar} {share:.0%}"
    head.add_row("memory", f"{used}  ({s.maxmemory_policy})")
    head.add_row("fragmentation", f"rss/used {s.frag_ratio:.2f}, allocator {s.allocator_frag_ratio:.2f}")
    ops = (
        f"{r.ops_s:,.0f}/s from clients ({r.commands_s:,.0f}/s with what scripts ran)"
        if r
        else f"{s.ops_per_sec:,}/s (server figure; rates after the next refresh)"
    )
    head.add_row("ops", ops)
    head.add_row("clients", f"{s.clients} ({s.blocked_clients} blocked)")
    window = f", last {r.seconds:.1f} s {_ratio(r.hit_rate)}" if r else ""
    head.add_row("hit rate", f"{_ratio(s.hit_rate)} since start{window}")
    if r:
        head.add_row("evictions", Text(f"{r.evicted_s:,.1f}/s", style="bold red" if r.evicted else ""))
        head.add_row("expired", f"{r.expired_s:,.1f}/s")
    head.add_row("keys", ", ".join(f"db{db} {k:,}" for db, (k, _e) in sorted(s.keyspace.items())) or "none")

    stores = Table(title="per-store hit rate (published by our processes)")
    for col in ("store", "hits", "misses", "hit rate", "last interval"):
        stores.add_column(col, justify="left" if col == "store" else "right")
    for st in obs.stores:
        stores.add_row(
            st.store.value, f"{st.hits:,}", f"{st.misses:,}", _ratio(st.ratio), _ratio(st.window_ratio)
        )

    parts: list[Any] = [head]
    if s.nodes:
        parts.append(_nodes_table(obs))
    parts.append(stores)
    if obs.ingesters:
        ing = Table(title="ingest")
        for col in ("source", "lag ms", "batch", "max batch", "trades", "commits", "seen"):
            ing.add_column(col, justify="left" if col == "source" else "right")
        for f in obs.ingesters:
            ing.add_row(
                f.source,
                f"{f.lag_ms:,.1f}",
                f"{f.batch:,}",
                f"{f.max_batch:,}",
                f"{f.trades:,}",
                f"{f.commits:,}",
                f"{f.age_s:.0f} s ago",
            )
        parts.append(ing)
    else:
        parts.append(Text("ingest: no ingester running", style="dim"))
    parts.append(_checks_table(obs.checks))
    return Group(*parts)


def _rounded(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def _node_json(n: Sample, r: Rates | None) -> dict[str, Any]:
    return {
        "node": n.node,
        "role": n.role,
        "used_bytes": n.used_memory,
        "maxmemory_bytes": n.maxmemory,
        "memory_share": _rounded(n.memory_share),
        "ops_per_s": round(r.ops_s, 1) if r else None,
        "clients": n.clients,
        "keys": sum(k for k, _e in n.keyspace.values()),
        "replicas": n.replicas,
    }


def monitor_json(obs: Observation, where: str) -> dict[str, Any]:
    """One reading for machines: wall-clock time, counters and rates; fields in docs/operations.md."""
    s, r = obs.sample, obs.rates
    return {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "redis": where,
        "uptime_s": s.uptime_s,
        "memory": {
            "used_bytes": s.used_memory,
            "maxmemory_bytes": s.maxmemory,
            "policy": s.maxmemory_policy,
            "frag_ratio": s.frag_ratio,
            "allocator_frag_ratio": s.allocator_frag_ratio,
        },
        "clients": s.clients,
        "blocked_clients": s.blocked_clients,
        "hit_rate": _rounded(s.hit_rate),
        "window": None
        if r is None
        else {
            "seconds": round(r.seconds, 3),
            "ops_per_s": round(r.ops_s, 1),
            "hit_rate": _rounded(r.hit_rate),
            "evicted_per_s": round(r.evicted_s, 3),
            "expired_per_s": round(r.expired_s, 3),
        },
        "keys": {f"db{db}": keys for db, (keys, _exp) in sorted(s.keyspace.items())},
        "nodes": [_node_json(n, obs.node_rates.get(n.node)) for n in s.nodes],
        "stores": [
            {
                "store": st.store.value,
                "hits": st.hits,
                "misses": st.misses,
                "hit_rate": _rounded(st.ratio),
                "window_hit_rate": _rounded(st.window_ratio),
            }
            for st in obs.stores
        ],
        "ingesters": [
            {
                "source": f.source,
                "lag_ms": round(f.lag_ms, 1),
                "batch": f.batch,
                "max_batch": f.max_batch,
                "trades": f.trades,
                "commits": f.commits,
                "seen_s_ago": round(f.age_s, 1),
            }
            for f in obs.ingesters
        ],
        "checks": [c.as_json() for c in obs.checks],
    }


@app.command()
def monitor(
    interval: Annotated[float, typer.Option(min=0.2, max=60, help="Seconds between refreshes.")] = 1.0,
    duration: Annotated[float | None, typer.Option(min=0, help="Stop after this many seconds.")] = None,
    once: Annotated[bool, typer.Option(help="Print one reading (two samples, for rates) and exit.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="With --once: print the reading as JSON (implies --once).")
    ] = False,
) -> None:
    """Live view of the server, the stores, the ingesters and the alerts (Ctrl-C to stop).

    Memory vs maxmemory, ops/s, clients, hit rates (server and per store), evictions,
    expirations, ingest lag and batch sizes, and the alert state.
    """

    async def job(rt: Runtime) -> None:
        watcher = watcher_for(rt)
        obs = await watcher.poll()
        if once or as_json:
            await asyncio.sleep(interval)
            reading = await watcher.poll()
            if as_json:
                dump(monitor_json(reading, rt.where))
            else:
                out.print(monitor_view(reading, rt.where))
            return
        started = time.monotonic()
        if not out.is_terminal:  # a pipe or a journal: each reading printed whole, one after another
            with contextlib.suppress(asyncio.CancelledError):
                while duration is None or time.monotonic() - started < duration:
                    await asyncio.sleep(interval)
                    out.print(monitor_view(await watcher.poll(), rt.where))
            return
        with (
            Live(monitor_view(obs, rt.where), console=out, refresh_per_second=4) as live,
            contextlib.suppress(asyncio.CancelledError),
        ):
            while duration is None or time.monotonic() - started < duration:
                await asyncio.sleep(interval)
                live.update(monitor_view(await watcher.poll(), rt.where))

    run(job)


# -- alerts ----------------------------------------------------------------------------------------


@app.command("alerts")
def alerts_cmd(
    interval: Annotated[
        float, typer.Option(min=0.1, max=60, help="Seconds between the two samples (ops/s).")
    ] = 1.0,
    as_json: JsonOpt = False,
) -> None:
    """Check the runbook's thresholds (memory, connections, hit rate, ops/s, evictions, last backup).

    Exit 0 when all are ok, 1 on a warning, 2 on a critical: ready for cron. Thresholds:
    SMARTTRADE_ALERT_* (docs/operations.md).
    """

    async def job(rt: Runtime) -> list[alerts.Check]:
        servers = await primary_admins(rt.topology, rt.settings, rt.url)
        first = await take_all(servers.admins)
        await asyncio.sleep(interval)
        second = await take_all(servers.admins)
        prev = None
        with contextlib.suppress(rexc.RedisError):  # e.g. a user without access to ops:*
            prev = await published.previous_check(servers.keys)
        age = newest_age_s(rt.settings.backup_dir)
        checks = alerts.evaluate(rt.settings, second, rates(first, second), prev, age)
        with contextlib.suppress(rexc.RedisError):  # a read-only user cannot keep the state: not fatal
            await published.save_check(servers.keys, second)
        return checks

    checks = run(job)
    level = alerts.worst(checks)
    if as_json:
        dump({"status": level.label, "exit_code": int(level), "checks": [c.as_json() for c in checks]})
    else:
        out.print(_checks_table(checks))
        out.print(Text(f"status: {level.label}", style=LEVEL_STYLE[level]))
    raise typer.Exit(int(level))


# -- exporter --------------------------------------------------------------------------------------


@app.command()
def exporter(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port for /metrics.")] = 9187,
    bind: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    duration: Annotated[float | None, typer.Option(min=0, help="Stop after this many seconds.")] = None,
) -> None:
    """Serve Prometheus metrics at http://BIND:PORT/metrics (redis_exporter names plus ours)."""
    from prometheus_client import start_http_server
    from prometheus_client.registry import CollectorRegistry

    from smarttrade.ops.metrics import SmartTradeCollector, threadsafe_fetch

    async def job(rt: Runtime) -> None:
        watcher = watcher_for(rt)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(SmartTradeCollector(threadsafe_fetch(watcher, asyncio.get_running_loop()), watcher))
        try:
            server, thread = start_http_server(port, addr=bind, registry=registry)
        except OSError as exc:
            fail(f"cannot listen on {bind}:{port}: {exc.strerror or exc}", 2)
        err.print(
            f"serving http://{bind}:{port}/metrics for {rt.where} (Ctrl-C to stop)",
            markup=False,
            highlight=False,
        )
        try:
            if duration is None:
                await asyncio.Event().wait()
            else:
                await asyncio.sleep(duration)
        finally:
            server.shutdown()
            thread.join(timeout=5)

    run(job, check=False)  # a Redis that is down at start is `redis_up 0`, not a crash loop


__all__ = ["keys_cmd", "monitor_json", "monitor_view", "ttl_table"]
