"""Maintain and protect: cleanup, flush, profile, audit, backup, restore, export, import."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from smarttrade.cli.common import (
    JsonOpt,
    StoreArg,
    admin_for,
    app,
    confirm,
    dump,
    err,
    fail,
    note,
    out,
    run,
    run_async,
)
from smarttrade.cli.progress import counting
from smarttrade.errors import SmartTradeError
from smarttrade.keyspace import Store
from smarttrade.ops import audit as audit_ops
from smarttrade.ops import backup as backup_ops
from smarttrade.ops import keys, transfer
from smarttrade.ops import profile as profile_ops
from smarttrade.ops.nodes import DataNode, data_nodes, store_clients
from smarttrade.redis.embedded import stop_embedded
from smarttrade.redis.topology import Placement
from smarttrade.runtime import Runtime
from smarttrade.settings import load_settings

Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
SEVERITY_STYLE = {
    audit_ops.Severity.OK: "green",
    audit_ops.Severity.INFO: "cyan",
    audit_ops.Severity.WARNING: "yellow",
    audit_ops.Severity.CRITICAL: "bold red",
}


@app.command()
def cleanup(
    store: Annotated[
        Store | None, typer.Argument(help="One store (default: every store that must expire).")
    ] = None,
    apply: Annotated[bool, typer.Option(help="Give the keys their TTL (default: only report).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Find keys that should expire but have no TTL; --apply gives each its TTL.

    Dry run by default. User settings and ingest checkpoints are permanent on purpose and never touched.
    """

    async def job(rt: Runtime) -> list[keys.CleanupResult]:
        targets = [store] if store else [s for s in Store if rt.settings.ttl(s) is not None]
        results = []
        for s in targets:
            clients = store_clients(rt.topology, s)
            results.append(await keys.cleanup(clients, rt.url, rt.settings, s, apply))
        return results

    results = run(job)
    if as_json:
        dump([r.__dict__ | {"store": r.store.value} for r in results])
        return
    table = Table(title="keys without a TTL that should have one" + ("" if apply else " (dry run)"))
    for col in ("store", "scanned", "missing TTL", "fixed", "e.g."):
        table.add_column(col, justify="left" if col in ("store", "e.g.") else "right")
    for r in results:
        table.add_row(
            r.store.value, f"{r.scanned:,}", f"{r.missing:,}", f"{r.fixed:,}", ", ".join(r.examples[:3])
        )
    out.print(table)
    missing = sum(r.missing for r in results)
    if missing and not apply:
        out.print("run again with --apply to give them their TTL")


@app.command()
def flush(
    store: StoreArg,
    yes: Yes = False,
    include_settings: Annotated[
        bool, typer.Option("--include-user-settings", help="Required to flush the user-settings store.")
    ] = False,
    flushdb: Annotated[
        bool,
        typer.Option(
            "--flushdb", help="Use FLUSHDB ASYNC on the store's db (only when it holds nothing else)."
        ),
    ] = False,
) -> None:
    """Delete every key of one store (SCAN+UNLINK of its prefixes; never another store's keys).

    Ingest checkpoints and source records are kept (flushing them would make the next ingest
    count every trade again). Asks first; with no terminal the answer is no unless --yes. The
    user-settings store is permanent data: it also needs --include-user-settings.
    """
    if store is Store.CONFIG and not include_settings:
        fail("the user-settings store holds permanent user data; add --include-user-settings to flush it", 2)
    placement = Placement.from_settings(load_settings())
    db = placement.db(store)
    shared = [s.value for s in placement.shared_with(store)]
    if flushdb and shared:  # checked with --yes too: a cron line must not wipe another store
        fail(f"--flushdb would also delete {', '.join(shared)} (same db {db}); leave it out", 2)
    if not yes:
        how = "FLUSHDB" if flushdb else "SCAN+UNLINK of its keys"
        note = f"; db {db} is shared with {', '.join(shared)}" if shared else ""
        if not confirm(f"Delete all {store.value} keys in db {db} by {how}{note}?"):
            fail("nothing deleted", 1)

    async def job(rt: Runtime) -> keys.FlushResult:
        clients = store_clients(rt.topology, store)
        with counting(err, f"flushing {store.value}") as tick:
            return await keys.flush_store(admin_for(rt), clients, store, flushdb, tick)

    result = run(job)
    if result.note:
        err.print(result.note, markup=False)
    out.print(f"{store.value}: {result.deleted:,} keys deleted ({result.how}, db {db})")


# -- profile ---------------------------------------------------------------------------------------

profile_app = typer.Typer(
    help="The trading profile: render a redis.conf fragment, check or apply it.", no_args_is_help=True
)
app.add_typer(profile_app, name="profile")


@profile_app.command("render")
def profile_render(
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write the fragment here (default: stdout).")
    ] = None,
    secrets_file: Annotated[
        Path, typer.Option("--secrets", help="Where the role passwords go (mode 0600).")
    ] = Path("smarttrade-acl.env"),
    bind: Annotated[str, typer.Option(help="bind addresses.")] = "127.0.0.1 -::1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 6379,
    data_dir: Annotated[
        str, typer.Option("--dir", help="The server's data folder.")
    ] = "/var/lib/smarttrade/redis",
    rename_dangerous: Annotated[
        bool, typer.Option(help="Also rename CONFIG/FLUSHDB and disable FLUSHALL/KEYS (rename-command).")
    ] = False,
) -> None:
    """Write the trading profile as a redis.conf fragment, with least-privilege ACL users.

    Memory, eviction, notifications, keepalive, timeout, bind, protected mode, persistence, and
    the users ingest, gateway, operator and exporter with fresh passwords (in --secrets).
    """
    try:
        settings = load_settings()
    except SmartTradeError as exc:
        fail(str(exc), exc.exit_code)
    rendered = profile_ops.render(settings, bind, port, data_dir, rename_dangerous=rename_dangerous)
    host = bind.split()[0].lstrip("-")
    # All roles in one file for the operator; one file per role for its systemd unit, so a
    # service holds only its own password (systemd reads EnvironmentFile= as root).
    files = {secrets_file: profile_ops.secrets_env(rendered, host, port)}
    for role in profile_ops.ROLES:
        role_file = secrets_file.with_name(f"{secrets_file.stem}-{role}{secrets_file.suffix}")
        files[role_file] = profile_ops.role_env(rendered, role, host, port)
    try:
        for path, text in files.items():
            _write_private(path, text, 0o600)
        if out_file is not None:
            _write_private(out_file, rendered.conf, 0o640)  # password hashes and renamed commands
    except OSError as exc:
        fail(f"cannot write {exc.filename}: {exc.strerror or exc}", 1)
    if out_file is None:
        out.out(rendered.conf, end="", highlight=False)
    else:
        err.print(f"profile written to {out_file}", markup=False)
    err.print(
        f"role passwords written to {secrets_file} and one file per role beside it (mode 0600)", markup=False
    )


def _write_private(path: Path, text: str, mode: int) -> None:
    """Write with ``mode`` whatever the umask, and whatever mode an existing file had."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.fchmod(fd, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def _diff_table(diffs: list[profile_ops.Difference], same: list[tuple[str, str]], where: str) -> Table:
    table = Table(title=f"trading profile vs {where}")
    for col in ("setting", "profile", "server", ""):
        table.add_column(col)
    for d in diffs:
        have = d.have if d.have is not None else "unknown"
        table.add_row(d.name, d.want, have, Text("differs" if d.known else "cannot read", style="yellow"))
    for name, value in same:
        table.add_row(name, "", value, Text("ok", style="green"))
    return table


NodeCheck = tuple[DataNode, list[profile_ops.Difference], list[tuple[str, str]], str]


def _node_note(rt: Runtime) -> None:
    """Sentinel mode: say why the sentinels are not in a per-node list."""
    if rt.topology.mode == "sentinel":
        note("sentinels hold no data and take no profile: master and replicas only")


@profile_app.command("check")
def profile_check(as_json: JsonOpt = False) -> None:
    """Compare every data node with the profile; list each difference. Exit 1 when any differs.

    Standalone: the server; sentinel: the master and its replicas; cluster: every primary and
    replica (a replica promoted later must already match)."""

    async def job(rt: Runtime) -> list[NodeCheck]:
        _node_note(rt)
        async with data_nodes(rt.topology, rt.settings, rt.url) as nodes:
            return [(n, *await profile_ops.check(n.admin, rt.settings)) for n in nodes]

    checks = run(job)
    one = len(checks) == 1
    if as_json:
        per_node = [
            {
                "node": n.view.addr,
                "role": n.view.role,
                "differences": [{"setting": d.name, "profile": d.want, "server": d.have} for d in diffs],
                "matching": dict(same),
                "unreadable_because": why,
            }
            for n, diffs, same, why in checks
        ]
        first = per_node[0]
        dump(
            {
                **first,
                "differences": [{**d, "node": p["node"]} for p in per_node for d in p["differences"]],
                "nodes": per_node,
            }
        )
    else:
        for n, diffs, same, why in checks:
            out.print(_diff_table(diffs, same, "the live server" if one else n.label))
            if why:
                err.print(f"{n.view.addr}: some settings were read from INFO instead: {why}", markup=False)
        for n, diffs, _same, _why in checks:
            verdict = "matches the profile" if not diffs else f"{len(diffs)} differences"
            out.print(verdict if one else f"{n.label}: {verdict}", markup=False)
        if any(diffs for _n, diffs, _s, _w in checks):
            out.print("`smarttrade profile apply` fixes them")
    raise typer.Exit(1 if any(diffs for _n, diffs, _s, _w in checks) else 0)


@profile_app.command("apply")
def profile_apply(
    yes: Yes = False,
    rewrite: Annotated[
        bool, typer.Option(help="Also CONFIG REWRITE, so the server's redis.conf keeps them.")
    ] = False,
) -> None:
    """CONFIG SET each setting that differs from the profile, on every data node (each gets its
    own CONFIG SET: a cluster client would send it to one node). bind and ACL users need redis.conf."""

    async def job(rt: Runtime) -> list[tuple[DataNode, list[profile_ops.Difference], list[tuple[str, str]]]]:
        _node_note(rt)
        async with data_nodes(rt.topology, rt.settings, rt.url) as nodes:
            planned = [(n, (await profile_ops.check(n.admin, rt.settings))[0]) for n in nodes]
            if not any(diffs for _n, diffs in planned):
                return [(n, diffs, []) for n, diffs in planned]
            for n, diffs in planned:
                for d in diffs:
                    have = d.have if d.have is not None else "unknown"
                    prefix = "" if len(planned) == 1 else f"{n.view.addr}: "
                    out.print(f"{prefix}{d.name}: {have} -> {d.want}", markup=False)
            if not yes and not confirm("Apply these with CONFIG SET?"):
                fail("nothing changed", 1)
            done = []
            for n, diffs in planned:
                failed = await profile_ops.apply(n.admin, diffs) if diffs else []
                if rewrite and len(failed) < len(diffs):
                    await n.admin.call("CONFIG", "REWRITE")
                done.append((n, diffs, failed))
            return done

    results = run(job)
    if not any(diffs for _n, diffs, _f in results):
        out.print(
            "the server already matches the profile"
            if len(results) == 1
            else "every node matches the profile"
        )
        return
    for n, diffs, failed in results:
        for name, why in failed:
            err.print(f"{n.view.addr}: {name}: not applied: {why}", markup=False)
        line = f"applied {len(diffs) - len(failed)} of {len(diffs)} settings"
        out.print(line if len(results) == 1 else f"{n.label}: {line}", markup=False)
    raise typer.Exit(1 if any(failed for _n, _d, failed in results) else 0)


# -- audit -----------------------------------------------------------------------------------------


@app.command()
def audit(as_json: JsonOpt = False) -> None:
    """Security audit of every data node; exit 2 on a critical finding, 1 on a warning.

    Bind, protected mode, password, dangerous commands, TLS, persistence of the user settings
    and the eviction policy; each finding with a severity and a fix. Sentinel: the master and its
    replicas; cluster: every primary and replica.
    """

    async def job(rt: Runtime) -> list[tuple[DataNode, list[audit_ops.Finding]]]:
        _node_note(rt)
        async with data_nodes(rt.topology, rt.settings, rt.url) as nodes:
            return [(n, await audit_ops.audit(n.admin)) for n in nodes]

    audited = run(job)
    one = len(audited) == 1
    every = [f for _n, findings in audited for f in findings]
    worst = max((f.severity for f in every), default=audit_ops.Severity.OK)
    code = 2 if worst is audit_ops.Severity.CRITICAL else 1 if worst is audit_ops.Severity.WARNING else 0
    if as_json:
        findings = [{**f.as_json(), "node": n.view.addr} for n, fs in audited for f in fs]
        dump({"worst": worst.label, "findings": findings})
    else:
        for n, findings in audited:
            table = Table(title="security audit" if one else f"security audit: {n.label}")
            for col in ("check", "severity", "finding", "fix"):
                table.add_column(col)
            for f in findings:
                table.add_row(
                    f.check, Text(f.severity.label, style=SEVERITY_STYLE[f.severity]), f.detail, f.fix
                )
            out.print(table)
        if not one:
            for n, findings in audited:
                node_worst = max((f.severity for f in findings), default=audit_ops.Severity.OK)
                out.print(f"{n.label}: {node_worst.label}", markup=False)
    raise typer.Exit(code)


# -- backup and restore ----------------------------------------------------------------------------


@app.command()
def backup(
    keep: Annotated[
        int | None, typer.Option(min=1, help="Keep this many backups (default SMARTTRADE_BACKUP_KEEP).")
    ] = None,
    folder: Annotated[
        Path | None, typer.Option("--to", help="Backup folder (default SMARTTRADE_BACKUP_DIR).")
    ] = None,
    rdb_file: Annotated[
        Path | None, typer.Option(help="The server's dump.rdb, when CONFIG cannot tell.")
    ] = None,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait for BGSAVE.")] = 600,
    as_json: JsonOpt = False,
) -> None:
    """Back up the server: BGSAVE, then copy the RDB with a timestamp and sha256.

    Waits until INFO persistence reports the save done and ok, copies through a temporary name
    with fsync, and keeps the newest N backups.
    """

    async def job(rt: Runtime) -> backup_ops.BackupResult:
        admin = admin_for(rt)
        embedded_dir = rt.settings.smarttrade_data_dir if rt.embedded else None
        source = rdb_file or await backup_ops.rdb_path(admin, embedded_dir)
        target = folder or rt.settings.backup_dir
        with counting(err, "backup", unit="bytes") as tick:
            return await backup_ops.backup(
                admin,
                target,
                keep or rt.settings.smarttrade_backup_keep,
                source,
                timeout,
                on_wait=lambda m: None,
                progress=tick,
            )

    result = run(job)
    if as_json:
        dump(
            {
                "file": str(result.file),
                "sha256": result.sha256,
                "bytes": result.size,
                "bgsave_seconds": round(result.save_s, 3),
                "pruned": [str(p) for p in result.pruned],
            }
        )
        return
    out.print(
        f"backup: {result.file} ({result.size:,} bytes, BGSAVE {result.save_s:.2f} s)",
        markup=False,
        highlight=False,
    )
    out.print(f"sha256: {result.sha256}", markup=False, highlight=False)
    for path in result.pruned:
        out.print(f"removed old backup {path.name}", markup=False, highlight=False)


@app.command()
def backups(as_json: JsonOpt = False) -> None:
    """List the backups in SMARTTRADE_BACKUP_DIR, newest last."""
    settings = load_settings()
    found = backup_ops.list_backups(settings.backup_dir)
    if as_json:
        dump([{"file": str(b.path), "created": b.created.isoformat(), "bytes": b.size} for b in found])
        return
    table = Table(title=f"backups in {settings.backup_dir}")
    for col in ("file", "created (UTC)", "bytes", "age"):
        table.add_column(col, no_wrap=True)
    for b in found:
        table.add_row(
            b.path.name, b.created.strftime("%Y-%m-%d %H:%M:%S"), f"{b.size:,}", f"{b.age_s / 3600:.1f} h"
        )
    out.print(table)


@app.command()
def restore(
    file: Annotated[Path, typer.Argument(help="A backup's .rdb file.")],
    yes: Yes = False,
    check_only: Annotated[
        bool,
        typer.Option("--check", help="Only verify the file (sha256 and redis-check-rdb); change nothing."),
    ] = False,
) -> None:
    """Restore the embedded server from a backup (for your own server: prints the procedure).

    Verifies the file (sha256, redis-check-rdb), stops the server without saving, sets the
    current files aside, starts on the backup, verifies it and turns the AOF back on.
    """
    try:
        settings = load_settings()
        if check_only:
            digest = backup_ops.verify_file(file)
            out.print(f"{file}: ok (sha256 {digest})", markup=False, highlight=False)
            return
    except SmartTradeError as exc:
        fail(str(exc), exc.exit_code)
    if settings.redis_url:
        fail(
            "restore replaces a server's files, so smarttrade performs it only for the embedded server.\n"
            "For your own server (docs/operations.md, 'Restore'):\n"
            f"  1. smarttrade restore --check {file}\n"
            "  2. stop the writers (ingester, gateway), then Redis: systemctl stop smarttrade-redis\n"
            "     (never SHUTDOWN SAVE: it would overwrite the file you restore)\n"
            "  3. move dump.rdb and appendonlydir/ in the server's dir aside\n"
            f"  4. copy {file} to the server's dir as dump.rdb (owner redis)\n"
            "  5. start it with appendonly no, check `smarttrade stats`,\n"
            "     then `redis-cli CONFIG SET appendonly yes` and wait for the rewrite\n"
            "  6. start the writers",
            2,
        )
    data_dir = settings.smarttrade_data_dir
    if not yes and not confirm(
        f"Replace the embedded server's data in {data_dir} with {file}? (the current files are kept aside)"
    ):
        fail("nothing changed", 1)

    async def main() -> backup_ops.RestoreResult:
        with counting(err, "verifying", unit="bytes") as tick:
            return await backup_ops.restore_embedded(
                data_dir, file, settings.smarttrade_maxmemory, on_step=lambda s: err.print(s), progress=tick
            )

    result = run_async(main)
    keys_text = ", ".join(f"db{db} {n:,}" for db, n in sorted(result.keys.items())) or "no keys"
    out.print(
        f"restored {result.file.name} (sha256 {result.sha256[:16]}…): {keys_text}",
        markup=False,
        highlight=False,
    )
    out.print(f"replaced files kept in {result.aside}", markup=False, highlight=False)
    state = "running at " + result.url if result.running else "stopped (the next command starts it)"
    out.print(f"embedded server {state}", markup=False, highlight=False)


# -- export and import -----------------------------------------------------------------------------


@app.command("export")
def export_cmd(
    store: StoreArg,
    file: Annotated[Path, typer.Argument(help="Where to write (JSON lines).")],
    as_json: JsonOpt = False,
) -> None:
    """Copy one store's keys to a file: DUMP + PTTL per key, read with SCAN (TTLs kept)."""

    async def job(rt: Runtime) -> transfer.ExportResult:
        db = rt.topology.db(store)
        with counting(err, f"export {store.value}") as tick:
            return await transfer.export_store(
                store_clients(rt.topology, store), rt.url, store, db, file, tick
            )

    result = run(job)
    if as_json:
        dump({"store": store.value, "file": str(file), "keys": result.keys, "gone": result.gone})
        return
    out.print(f"{store.value}: {result.keys:,} keys exported to {file}", markup=False, highlight=False)


@app.command("import")
def import_cmd(
    file: Annotated[Path, typer.Argument(help="A file written by `smarttrade export`.")],
    replace: Annotated[bool, typer.Option(help="Overwrite keys that exist (default: keep them).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Load a store export: RESTORE with each key's remaining TTL; expired keys are skipped."""
    try:
        header = transfer.read_header(file)
        total = transfer.count_lines(file)
    except (SmartTradeError, OSError) as exc:
        fail(str(exc), 1)
    store = Store(header["store"])

    async def job(rt: Runtime) -> transfer.ImportResult:
        client = rt.topology.client(store)
        with counting(err, f"import {store.value}", total) as tick:
            return await transfer.import_store(client, rt.url, file, replace, tick)

    result = run(job)
    if as_json:
        dump(
            {
                "store": store.value,
                "restored": result.restored,
                "expired": result.expired,
                "existed": result.existed,
            }
        )
        return
    out.print(
        f"{store.value}: {result.restored:,} keys restored, {result.expired:,} expired since the export, "
        f"{result.existed:,} kept as they were"
        + ("" if replace or not result.existed else " (use --replace)"),
        markup=False,
        highlight=False,
    )


@app.command()
def stop() -> None:
    """Stop the embedded server of SMARTTRADE_DATA_DIR, saving first (e.g. one a restore left running)."""
    try:
        settings = load_settings()
        if settings.redis_url:
            fail("REDIS_URL is set: smarttrade stops only the embedded server it runs", 2)
        stopped = stop_embedded(settings.smarttrade_data_dir)
    except SmartTradeError as exc:
        fail(str(exc), exc.exit_code)
    if stopped is None:
        out.print(f"no embedded server runs in {settings.smarttrade_data_dir}", markup=False, highlight=False)
    else:
        out.print(f"stopped the embedded server on port {stopped} (saved)", markup=False, highlight=False)
