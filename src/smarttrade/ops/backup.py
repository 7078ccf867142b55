"""Backups (BGSAVE, wait, copy with a timestamp and sha256, keep the last N) and the embedded
server's restore.

The restore procedure (docs/operations.md) is the runbook's "stop Redis, replace dump.rdb, start"
made safe: the file is checked first (sha256, redis-check-rdb), the server is stopped *without*
saving (a save would overwrite the file we restore), the append-only files are moved aside
(with AOF on, Redis loads them instead of the RDB), the old files are kept for a rollback, and the
server is started and verified before AOF is switched back on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import redis.asyncio as aioredis
import redis.exceptions as rexc

from smarttrade.errors import SmartTradeError
from smarttrade.ops.nodes import DataNode
from smarttrade.ops.server import Admin, CommandUnavailable
from smarttrade.redis.connections import redis_errors
from smarttrade.redis.embedded import (
    STATE_FILE,
    EmbeddedRedis,
    find_redis_binary,
    locked,
    running_process,
)

NAME_RE = re.compile(r"^smarttrade-(\d{8}T\d{6}\d{6}Z)(\.rdb|\.nodes)$")  # .nodes: a folder per set
MANIFEST = "manifest.json"
PROCEDURE = 'docs/operations.md, "Backup and restore in cluster and sentinel mode"'
STAMP_FORMAT = "%Y%m%dT%H%M%S%fZ"
CHUNK = 1 << 20
POLL_S = 0.1
Progress = Callable[[int, int], None]  # (done, total) bytes


class BackupError(SmartTradeError):
    pass


class NotReadableHere(BackupError):
    """A node's files are on another host: the by-hand procedure applies (exit 2)."""

    exit_code = 2


@dataclass(frozen=True, slots=True)
class BackupFile:
    path: Path
    created: datetime
    size: int

    @property
    def checksum_path(self) -> Path:
        return self.path.with_name(self.path.name + ".sha256")

    @property
    def age_s(self) -> float:
        return max(0.0, time.time() - self.created.timestamp())


def _size(path: Path) -> int | None:
    """A backup's bytes: the RDB file, or a node set's files (None: not a complete backup)."""
    if path.suffix == ".rdb":
        return path.stat().st_size if path.is_file() else None
    if not (path / MANIFEST).is_file():  # a set being written, or one that failed half-way
        return None
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file())


def list_backups(folder: Path) -> list[BackupFile]:
    """Our backups in ``folder`` (single RDB files and per-node sets), oldest first (by the UTC
    time in the name)."""
    found = []
    if folder.is_dir():
        for path in folder.iterdir():
            match = NAME_RE.match(path.name)
            size = _size(path) if match else None
            if not match or size is None:
                continue
            try:
                created = datetime.strptime(match[1], STAMP_FORMAT).replace(tzinfo=UTC)
            except ValueError:  # digits that are no date (a hand-made name): not one of ours
                continue
            found.append(BackupFile(path, created, size))
    return sorted(found, key=lambda b: b.created)


def newest_age_s(folder: Path) -> float | None:
    backups = list_backups(folder)
    return backups[-1].age_s if backups else None


def sha256_of(path: Path, progress: Progress | None = None) -> str:
    digest = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            done += len(chunk)
            if progress:
                progress(done, total)
    return digest.hexdigest()


def _copy_hashed(src: Path, dst: Path, progress: Progress | None) -> str:
    """Copy through a temporary name with fsync, so a crash never leaves half a backup."""
    digest = hashlib.sha256()
    tmp = dst.with_name(dst.name + ".part")
    with src.open("rb") as fin:  # an open file survives the server renaming a new dump over it
        total = os.fstat(fin.fileno()).st_size
        done = 0
        with tmp.open("wb") as fout:
            while chunk := fin.read(CHUNK):
                fout.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
            fout.flush()
            os.fsync(fout.fileno())
    tmp.replace(dst)
    return digest.hexdigest()


async def rdb_path(admin: Admin, embedded_dir: Path | None) -> Path:
    """Where the server writes its RDB: CONFIG GET, else the embedded server's folder."""
    try:
        conf = await admin.config_get("dir") | await admin.config_get("dbfilename")
        return Path(conf["dir"]) / conf["dbfilename"]
    except CommandUnavailable as exc:
        if embedded_dir is not None:
            return embedded_dir / "dump.rdb"
        raise BackupError(f"cannot find the server's RDB file: {exc}; give it with --rdb-file PATH") from None


async def _persistence(admin: Admin) -> dict[str, object]:
    return await admin.info("persistence")


async def bgsave_and_wait(admin: Admin, timeout_s: float, on_wait: Callable[[str], None]) -> float:
    """BGSAVE and wait until it is done and reported ok; returns the seconds it took."""
    started = time.monotonic()
    before = await _persistence(admin)
    last_save = int(before.get("rdb_last_save_time", 0))
    # rdb_last_save_time counts whole seconds: start in a later second than the last save,
    # so "a newer save time" proves that *our* save finished.
    with redis_errors(admin.url):
        now_s = int((await admin.client.time())[0])
    if now_s <= last_save:
        await asyncio.sleep(last_save + 1 - now_s + 0.05)
    while True:
        try:
            await admin.call("BGSAVE", "SCHEDULE")  # waits its turn behind an AOF rewrite
            break
        except SmartTradeError as exc:
            if "in progress" not in str(exc):  # another BGSAVE runs: ours starts after it
                raise
        on_wait("another save is running; waiting for it")
        await _deadline(started, timeout_s)
        await asyncio.sleep(POLL_S)
    on_wait("saving")
    seen_running = False
    while True:
        info = await _persistence(admin)
        running = bool(int(info.get("rdb_bgsave_in_progress", 0)))
        seen_running = seen_running or running
        saved = int(info.get("rdb_last_save_time", 0)) > last_save  # moves only on success
        failed = seen_running and not running and str(info.get("rdb_last_bgsave_status")) != "ok"
        if failed:
            raise BackupError("BGSAVE failed (rdb_last_bgsave_status is err); see the server's log")
        if saved and not running:
            return time.monotonic() - started
        await _deadline(started, timeout_s)
        await asyncio.sleep(POLL_S)


async def _deadline(started: float, timeout_s: float) -> None:
    if time.monotonic() - started > timeout_s:
        raise BackupError(f"BGSAVE did not finish within {timeout_s:g} s; see INFO persistence")


@dataclass(frozen=True, slots=True)
class BackupResult:
    file: Path
    sha256: str
    size: int
    save_s: float
    pruned: list[Path]


def prune(folder: Path, keep: int) -> list[Path]:
    """Remove all but the newest ``keep`` backups (and their checksum files)."""
    removed = []
    for old in list_backups(folder)[:-keep] if keep > 0 else []:
        if old.path.is_dir():
            shutil.rmtree(old.path)
        else:
            old.path.unlink(missing_ok=True)
        old.checksum_path.unlink(missing_ok=True)
        removed.append(old.path)
    return removed


async def backup(
    admin: Admin,
    folder: Path,
    keep: int,
    source: Path,
    timeout_s: float = 600,
    on_wait: Callable[[str], None] = lambda _: None,
    progress: Progress | None = None,
) -> BackupResult:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BackupError(f"cannot create the backup folder {folder}: {exc.strerror or exc}") from None
    save_s = await bgsave_and_wait(admin, timeout_s, on_wait)
    if not source.is_file():
        raise BackupError(
            f"the server saved, but {source} is not a file here (is the server on another host?)"
        )
    stamp = datetime.now(UTC).strftime(STAMP_FORMAT)
    target = folder / f"smarttrade-{stamp}.rdb"
    on_wait("copying")
    try:
        digest = await asyncio.to_thread(_copy_hashed, source, target, progress)
        info = BackupFile(target, datetime.now(UTC), target.stat().st_size)
        info.checksum_path.write_text(f"{digest}  {target.name}\n")  # `sha256sum -c` reads this
    except OSError as exc:
        target.with_name(target.name + ".part").unlink(missing_ok=True)
        raise BackupError(f"cannot copy {source} to {target}: {exc.strerror or exc}") from None
    return BackupResult(target, digest, info.size, save_s, prune(folder, keep))


# -- per node (cluster and sentinel mode) ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeCopy:
    """One node's RDB in a set, as the manifest lists it."""

    addr: str
    role: str
    slots: str  # a cluster primary's slot ranges; "" in sentinel mode (the master holds them all)
    run_id: str
    file: str  # within the set's folder
    sha256: str
    bytes: int
    saved_at: str  # UTC, when its BGSAVE finished
    bgsave_seconds: float


@dataclass(frozen=True, slots=True)
class NodesBackup:
    folder: Path
    manifest: Path
    nodes: list[NodeCopy]
    pruned: list[Path]


async def _readable_rdb(node: DataNode) -> Path:
    """The node's RDB path, if its folder can be read from this host; else a one-line BackupError
    naming the node and the documented by-hand procedure (exit 2)."""
    conf = await node.admin.config_get("dir") | await node.admin.config_get("dbfilename")
    folder = Path(conf["dir"])
    if not (folder.is_dir() and os.access(folder, os.R_OK | os.X_OK)):
        raise NotReadableHere(
            f"{node.label}: its dir {folder} is not readable on this host; back up each node "
            f"by hand as {PROCEDURE} describes"
        )
    return folder / conf["dbfilename"]


async def backup_nodes(
    nodes: list[DataNode],
    folder: Path,
    keep: int,
    mode: str,
    timeout_s: float = 600,
    on_wait: Callable[[str], None] = lambda _: None,
    progress: Progress | None = None,
) -> NodesBackup:
    """BGSAVE each node in turn (each waited for, ``timeout_s`` each), then copy every RDB into
    one ``smarttrade-STAMP.nodes`` folder with a SHA256SUMS and a manifest.json (written last: a
    set without one is incomplete and neither listed nor counted by the backup alert)."""
    sources = [await _readable_rdb(n) for n in nodes]  # all checked before any save
    saved: list[tuple[float, str, str]] = []
    for node in nodes:
        on_wait(f"saving {node.label}")
        took = await bgsave_and_wait(node.admin, timeout_s, on_wait)
        run_id = str((await node.admin.info("server")).get("run_id", ""))
        saved.append((took, run_id, datetime.now(UTC).isoformat(timespec="seconds")))
    stamp = datetime.now(UTC).strftime(STAMP_FORMAT)
    target = folder / f"smarttrade-{stamp}.nodes"
    try:
        target.mkdir(parents=True)
    except OSError as exc:
        raise BackupError(f"cannot create the backup folder {target}: {exc.strerror or exc}") from None
    missing = [f"{n.label}: {src}" for n, src in zip(nodes, sources, strict=True) if not src.is_file()]
    if missing:
        raise BackupError(f"the nodes saved, but no RDB file at {'; '.join(missing)}")
    total = sum(src.stat().st_size for src in sources)
    copies, offset = [], 0
    for node, src, (took, run_id, at) in zip(nodes, sources, saved, strict=True):
        name = f"{node.view.addr.replace(':', '-')}.rdb"

        def tick(done: int, _total: int, base: int = offset) -> None:
            if progress:
                progress(base + done, total)

        on_wait(f"copying {node.label}")
        try:
            digest = await asyncio.to_thread(_copy_hashed, src, target / name, tick)
        except OSError as exc:
            raise BackupError(f"cannot copy {src} to {target / name}: {exc.strerror or exc}") from None
        size = (target / name).stat().st_size
        offset += size
        view = node.view
        took = round(took, 3)
        copies.append(NodeCopy(view.addr, view.role, view.slots, run_id, name, digest, size, at, took))
    (target / "SHA256SUMS").write_text("".join(f"{c.sha256}  {c.file}\n" for c in copies))
    manifest = {
        "mode": mode,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "restore": PROCEDURE,
        "nodes": [dataclasses.asdict(c) for c in copies],
    }
    tmp = target / (MANIFEST + ".part")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(target / MANIFEST)
    return NodesBackup(target, target / MANIFEST, copies, prune(folder, keep))


# -- restore -------------------------------------------------------------------------------------


def verify_file(path: Path, progress: Progress | None = None, server: str | None = None) -> str:
    """Check the sha256 (when a checksum file is beside it) and the RDB's structure, with the
    redis-server that will load it (a newer RDB version does not load into an older server)."""
    if not path.is_file():
        raise BackupError(f"{path}: no such file")
    digest = sha256_of(path, progress)
    checksum = path.with_name(path.name + ".sha256")
    if checksum.is_file():
        expected = checksum.read_text().split()[0] if checksum.read_text().split() else ""
        if expected.lower() != digest:
            raise BackupError(f"{path}: sha256 {digest} does not match {checksum.name} ({expected})")
    server = server or find_redis_binary()
    # redis-server acts as redis-check-rdb when called by that name.
    check = subprocess.run(
        ["redis-check-rdb", str(path)], executable=server, capture_output=True, text=True, timeout=600
    )
    if check.returncode != 0:
        lines = [ln for ln in (check.stdout + check.stderr).splitlines() if ln.strip()]
        reason = next(
            (ln for ln in lines if "error" in ln.lower() or "wrong" in ln.lower()), lines[-1] if lines else ""
        )
        raise BackupError(f"{path}: not a valid RDB for {Path(server).name} here: {reason.strip()}")
    return digest


def verify_set(folder: Path, server: str | None = None) -> list[tuple[str, str]]:
    """Check each node's RDB of a per-node set: its sha256 against the manifest, and its
    structure (``verify_file``); returns (addr, file) per node."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        nodes = [(str(n["addr"]), str(n["file"]), str(n["sha256"])) for n in manifest["nodes"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BackupError(f"{folder}: no readable {MANIFEST} ({exc}); not a complete backup set") from None
    for addr, name, expected in nodes:
        digest = verify_file(folder / name, server=server)
        if digest != expected:
            raise BackupError(
                f"{folder / name} ({addr}): sha256 {digest} does not match {MANIFEST} ({expected})"
            )
    return [(addr, name) for addr, name, _ in nodes]


@dataclass(frozen=True, slots=True)
class RestoreResult:
    file: Path
    sha256: str
    url: str
    keys: dict[int, int]  # db -> keys after the restore
    aside: Path  # where the replaced files were kept
    running: bool  # the server was left running (it was running before)


def _aof_paths(data_dir: Path) -> list[Path]:
    return [p for p in (data_dir / "appendonlydir", data_dir / "appendonly.aof") if p.exists()]


async def _wait_aof_rewrite(client: aioredis.Redis, timeout_s: float) -> None:
    started = time.monotonic()
    while True:
        info = await client.info("persistence")
        busy = int(info.get("aof_rewrite_in_progress", 0)) or int(info.get("aof_rewrite_scheduled", 0))
        if int(info.get("aof_enabled", 0)) and not busy:
            if str(info.get("aof_last_bgrewrite_status", "ok")) != "ok":
                raise BackupError("the AOF rewrite after the restore failed; see the server's log")
            return
        if time.monotonic() - started > timeout_s:
            raise BackupError(f"the AOF rewrite did not finish within {timeout_s:g} s")
        await asyncio.sleep(POLL_S)


async def _wait_loaded(client: aioredis.Redis, timeout_s: float) -> None:
    """Until the RDB is fully loaded: a server answers (-LOADING) before it is."""
    started = time.monotonic()
    while True:
        try:
            if not int((await client.info("persistence")).get("loading", 0)):
                return
        except rexc.BusyLoadingError:
            pass
        if time.monotonic() - started > timeout_s:
            raise BackupError(f"the server did not finish loading the backup within {timeout_s:g} s")
        await asyncio.sleep(POLL_S)


def _write_state(data_dir: Path, server: EmbeddedRedis) -> None:
    assert server.process is not None
    (data_dir / STATE_FILE).write_text(json.dumps({"pid": server.process.pid, "port": server.port}))


def _roll_back(data_dir: Path, aside: Path, moved: list[Path]) -> None:
    """Put the replaced files back; the restored server's own files go."""
    (data_dir / "dump.rdb").unlink(missing_ok=True)
    for path in _aof_paths(data_dir):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    for path in moved:
        (aside / path.name).replace(path)


async def restore_embedded(
    data_dir: Path,
    file: Path,
    maxmemory: str,
    on_step: Callable[[str], None] = lambda _: None,
    progress: Progress | None = None,
    timeout_s: float = 600,
) -> RestoreResult:
    data_dir.mkdir(parents=True, exist_ok=True)
    running = running_process(data_dir)
    binary = running[2] if running else None
    on_step("verifying the backup")
    digest = await asyncio.to_thread(verify_file, file, progress, binary)
    # The copy is made before anything is stopped: a full disk or a bad path changes nothing.
    staged = data_dir / "restore.rdb.part"
    try:
        await asyncio.to_thread(_copy_hashed, file, staged, None)
    except OSError as exc:
        staged.unlink(missing_ok=True)
        raise BackupError(f"cannot copy {file} into {data_dir}: {exc.strerror or exc}") from None
    with locked(data_dir):  # no command attaches or starts a server meanwhile
        running = running_process(data_dir)
        port = running[1] if running else None
        was_running = running is not None
        if running:
            on_step("stopping the embedded server without saving")
            EmbeddedRedis(data_dir=data_dir, port=running[1]).shutdown_remote(running[0], save=False)
        aside = Path(
            tempfile.mkdtemp(prefix=f"pre-restore-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-", dir=data_dir)
        )
        moved: list[Path] = []
        server = EmbeddedRedis(
            data_dir=data_dir,
            config={"maxmemory": maxmemory, "appendonly": "no"},
            port=port or 0,
            binary=binary,
        )
        try:  # from here on, any failure or interrupt puts the old files (and server) back
            for path in [data_dir / "dump.rdb", *_aof_paths(data_dir)]:
                if path.exists():
                    path.rename(aside / path.name)
                    moved.append(path)
            on_step("placing the backup")
            staged.replace(data_dir / "dump.rdb")
            on_step("starting the server on the backup")
            server.start()
            _write_state(data_dir, server)
            client = aioredis.Redis.from_url(server.url)
            try:
                await _wait_loaded(client, timeout_s)
                keyspace = await client.info("keyspace")
                keys = {int(k[2:]): int(v["keys"]) for k, v in keyspace.items() if k.startswith("db")}
                on_step("turning the append-only file back on")
                await client.config_set("appendonly", "yes")
                await _wait_aof_rewrite(client, timeout_s)
                if not was_running:
                    await client.shutdown(save=True)
            finally:
                await client.aclose()
        except BaseException:
            server.stop(save=False)
            (data_dir / STATE_FILE).unlink(missing_ok=True)
            staged.unlink(missing_ok=True)
            _roll_back(data_dir, aside, moved)
            if was_running:  # the old server comes back on its own files
                old = EmbeddedRedis(
                    data_dir=data_dir, config={"maxmemory": maxmemory}, port=port or 0, binary=binary
                )
                old.start()
                _write_state(data_dir, old)
                old.detach()
            raise
        if was_running:  # it stays up for the commands that were using it
            server.detach()
        else:
            server.wait_exit()
            (data_dir / STATE_FILE).unlink(missing_ok=True)
    return RestoreResult(file, digest, server.url, keys, aside, was_running)
