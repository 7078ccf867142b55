"""What the CLI prints where no terminal is (pipes, files, journals), its --json fields, and its
rough edges: --version, flags in --help, `get` of every key family, `config`, `keys` streamed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from smarttrade import __version__
from smarttrade.keyspace import Store, family_of
from tests.conftest import run_smarttrade

DATA = Path(__file__).parent / "data"
DOCS = Path(__file__).parent.parent / "docs"


def _env(server: Any, columns: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env.update(REDIS_URL=server.url, **extra)
    if columns is not None:
        env["COLUMNS"] = columns
    return env


def _ok(result: subprocess.CompletedProcess[str], codes: tuple[int, ...] = (0,)) -> str:
    assert result.returncode in codes, result.stderr + result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    return result.stdout


@pytest.fixture
def filled(cli: Any, server: Any, tmp_path: Path) -> Any:
    """The b3 fixture ingested (every key family), and a user's setting."""
    _ok(
        cli.smarttrade(
            "ingest", "--format", "b3", str(DATA / "b3_trades.txt"), "--dead-letter", str(tmp_path / "d")
        )
    )
    cli.redis("-n", "5", "SET", "config:u1:theme", '"dark"')
    return cli


# -- item 14: nothing cut in a pipe or a file --------------------------------------------------------


@pytest.mark.one_binary
def test_piped_tables_keep_every_label_and_value_whole(filled: Any, server: Any, tmp_path: Path) -> None:
    backups = tmp_path / "a-backup-folder-with-a-long-name-so-that-an-80-column-table-would-cut-it"
    backups.mkdir()
    (backups / "smarttrade-20260101T000000000000Z.rdb").write_bytes(b"x")
    commands: list[tuple[str, ...]] = [
        ("status",),
        ("stats",),
        ("ttl", "quotes"),
        ("keys", "quotes", "--limit", "100"),
        ("info", "memory"),
        ("alerts", "--interval", "0.2"),
        ("monitor", "--once", "--interval", "0.2"),
        ("audit",),
        ("backups",),
        ("cleanup",),
        ("get", "lastquote:WINZ25"),
        ("footprint", "WINZ25"),
        ("indicators", "WINZ25"),
        ("latency", "--count", "5"),
        ("slowlog",),
        ("profile", "check"),
        ("config", "list", "u1"),
    ]
    for columns in (None, "30"):
        env = _env(server, columns, SMARTTRADE_BACKUP_DIR=str(backups))
        outputs = {}
        for command in commands:
            result = run_smarttrade(*command, env=env)
            text = _ok(result, (0, 1, 2)) + result.stderr
            assert "…" not in text, (columns, command, text)
            outputs[command[0]] = text
        assert server.url in outputs["status"]
        assert "ingest checkpoints, db 1 the trade streams (docs/keyspace.md)" in outputs["stats"]
        assert "none, but should expire" in outputs["ttl"]
        assert "ingest:checkpoint:" in outputs["keys"]
        assert "mem_fragmentation_ratio" in outputs["info"]
        assert "smarttrade-20260101T000000000000Z.rdb" in outputs["backups"]
        assert backups.name in outputs["backups"]
        assert "per-store hit rate (published by our processes)" in outputs["monitor"]
        assert "POC" in outputs["footprint"] and "buy/sell imbalance" in outputs["footprint"]
        assert "forming bar (peek)" in outputs["indicators"]
        assert "trading profile vs the live server" in outputs["profile"]


@pytest.mark.one_binary
def test_ingest_to_a_pipe_logs_plain_progress_lines(cli: Any, server: Any, tmp_path: Path) -> None:
    env = _env(server, "40")
    args = ("ingest", "--synthetic", "--duration", "6", "--dead-letter", str(tmp_path / "d"))
    result = run_smarttrade(*args, env=env)
    _ok(result)
    progress = [line for line in result.stderr.splitlines() if line.startswith("ingest: ")]
    assert len(progress) >= 2, result.stderr  # the first at once, then every few seconds, and the end
    for line in progress:
        assert re.search(r"[\d,]+ trades, [\d,]+/s, \d+ rejected, lag [\d,]+ ms, batch [\d,]+", line), line
    everything = result.stdout + result.stderr
    assert "…" not in everything and "\x1b" not in everything and "\r" not in everything
    assert "already committed (resumed)" in result.stdout  # the summary, whole at 40 columns


def test_monitor_in_a_pipe_prints_each_reading_whole(cli: Any, server: Any) -> None:
    result = run_smarttrade("monitor", "--interval", "0.5", "--duration", "2.2", env=_env(server, "40"))
    out = _ok(result)
    assert out.count("per-store hit rate (published by our processes)") >= 3, out
    assert "…" not in out and "\x1b" not in out


# -- item 14: --json fields are stable and documented -----------------------------------------------


def _documented_fields() -> dict[str, set[str]]:
    """docs/operations.md's table of --json fields: | `command` | `a`, `b`, ... |."""
    text = (DOCS / "operations.md").read_text()
    section = text.split("### JSON output", 1)[1].split("\n## ", 1)[0]
    fields: dict[str, set[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].startswith("`"):
            fields[cells[0].strip("`")] = set(re.findall(r"`([a-z0-9_]+)`", _outside_parentheses(cells[1])))
    return fields


def _outside_parentheses(text: str) -> str:
    """The text without its (nested) parenthesised parts: those name the fields one level down."""
    kept, depth = [], 0
    for char in text:
        depth += char == "("
        if not depth:
            kept.append(char)
        depth -= char == ")" and depth > 0
    return "".join(kept)


def _top_fields(value: Any) -> set[str]:
    if isinstance(value, list):
        assert value, "an empty list shows no fields"
        value = value[0]
    assert isinstance(value, dict)
    return set(value)


@pytest.mark.one_binary
def test_every_json_output_has_its_documented_fields(filled: Any, server: Any, tmp_path: Path) -> None:
    backups = tmp_path / "backups"
    backups.mkdir()
    (backups / "smarttrade-20260101T000000000000Z.rdb").write_bytes(b"x")
    env = {"SMARTTRADE_BACKUP_DIR": str(backups)}
    runs = {
        "status": ("status",),
        "stats": ("stats",),
        "keys": ("keys", "quotes"),
        "ttl": ("ttl", "quotes"),
        "monitor": ("monitor", "--once", "--interval", "0.3"),
        "alerts": ("alerts", "--interval", "0.2"),
        "latency": ("latency", "--count", "5"),
        "slowlog": ("slowlog",),
        "backups": ("backups",),
        "audit": ("audit",),
        "cleanup": ("cleanup",),
        "info": ("info",),
        "profile check": ("profile", "check"),
    }
    documented = _documented_fields()
    assert set(runs) <= set(documented), set(runs) - set(documented)
    for name, args in runs.items():
        value = json.loads(_ok(filled.smarttrade(*args, "--json", env=env), (0, 1, 2)))
        assert _top_fields(value) == documented[name], name
    reading = json.loads(_ok(filled.smarttrade("monitor", "--json", "--interval", "0.3")))
    assert time.time() - time.mktime(time.strptime(reading["time"][:19], "%Y-%m-%dT%H:%M:%S")) < 86_400 * 2
    assert reading["uptime_s"] >= 0 and reading["window"]["seconds"] > 0


# -- item 15: rough edges -----------------------------------------------------------------------------


def test_version_and_no_bool_placeholder_on_any_flag(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_smarttrade("--version", env=dict(os.environ))
    assert result.returncode == 0 and result.stdout.strip() == f"smarttrade {__version__}"
    from typer.core import TyperGroup

    from smarttrade.cli import command

    root = command()
    paths: list[list[str]] = [[]]
    for name, sub in root.commands.items():  # type: ignore[attr-defined]
        paths.append([name])
        if isinstance(sub, TyperGroup):
            paths += [[name, inner] for inner in sub.commands]
    assert len(paths) > 25
    for path in paths:
        with pytest.raises(SystemExit) as exit_info:
            command().main([*path, "--help"], prog_name="smarttrade")
        assert exit_info.value.code == 0
        text = capsys.readouterr().out
        assert "--help" in text and "<bool>" not in text, path
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "TERMINAL_WIDTH")}
    for path in (["ingest"], ["demo"], ["symbols", "add"], ["ingest", "--synthetic"]):
        piped = run_smarttrade(*path, "--help", env=env)  # into a pipe: no word cut at 80 columns
        assert piped.returncode == 0 and "…" not in piped.stdout, (path, piped.stdout)


def test_one_convention_for_counts_and_rates(filled: Any) -> None:
    one = json.loads(_ok(filled.smarttrade("slowlog", "--count", "3", "--json")))
    old = json.loads(_ok(filled.smarttrade("slowlog", "3", "--json")))
    assert len(one["entries"]) == len(old["entries"]) <= 3
    assert json.loads(_ok(filled.smarttrade("latency", "--count", "3", "--json")))["samples"] == 3
    clash = filled.smarttrade("slowlog", "2", "--count", "3")
    assert clash.returncode == 2 and "disagree" in clash.stderr and "Traceback" not in clash.stderr
    for command in ("demo", "ingest"):
        help_text = re.sub(r"[\s│]+", " ", _ok(filled.smarttrade(command, "--help")))
        found = re.search(r"--rate .*?\[default: ([\d.]+)\]", help_text)
        assert found and float(found[1]) == 50, command


@pytest.mark.one_binary
def test_get_reads_every_key_family_that_keys_lists(filled: Any) -> None:
    _ok(filled.smarttrade("alerts", "--interval", "0.1"), (0, 1, 2))  # keeps its state in ops:alerts
    by_family: dict[str, tuple[str, str]] = {}
    for store in Store:
        page = json.loads(_ok(filled.smarttrade("keys", store.value, "--limit", "5000", "--json")))
        for row in page["keys"]:
            fam = family_of(row["key"], store)
            assert fam is not None
            by_family.setdefault(fam.prefix, (row["key"], row["type"]))
    expected = {"quote", "lastquote", "ingest:checkpoint", "ops", "orderflow", "stream:trades", "bar", "bars"}
    assert expected | {"footprint", "fpbar", "calc", "config"} <= set(by_family)
    for prefix, (key, kind) in by_family.items():
        result = filled.smarttrade("get", key, "--json", "--count", "2")
        value = json.loads(_ok(result))
        assert value not in (None, [], {}), key
        pretty = filled.smarttrade("get", key, "--count", "2")
        assert f"{key}  store " in _ok(pretty) + pretty.stderr and "TTL" in pretty.stderr, key
        if kind == "hash":
            assert isinstance(value, dict)
        if prefix == "bar":
            assert {"open", "high", "low", "close", "volume"} <= set(value)
        if prefix == "bars":
            assert len(value) <= 2 and {"member", "score"} == set(value[0])
        if prefix == "stream:trades":
            assert len(value) <= 2 and value[-1]["id"] and value[-1]["fields"]["trades"]
        if prefix == "ingest:checkpoint":
            assert "seq" in value
    assert "no TTL" in filled.smarttrade("get", by_family["ingest:checkpoint"][0]).stderr


def test_config_command_goes_through_the_validating_store(filled: Any) -> None:
    _ok(filled.smarttrade("config", "set", "u1", "symbols", '["DOL","WIN"]'))
    assert filled.redis("-n", "5", "GET", "config:u1:symbols") == '["DOL","WIN"]'
    assert filled.redis("-n", "5", "GET", "config:u1:theme") == '"dark"'
    assert filled.redis("-n", "5", "TTL", "config:u1:theme") == "-1"
    assert json.loads(_ok(filled.smarttrade("config", "get", "u1", "symbols", "--json"))) == ["DOL", "WIN"]
    listed = json.loads(_ok(filled.smarttrade("config", "list", "u1", "--json")))
    assert listed == {"symbols": ["DOL", "WIN"], "theme": "dark"}
    bad = filled.smarttrade("config", "set", "u1", "theme", "blue")
    assert bad.returncode == 1 and bad.stderr.strip().startswith("theme: ") and "blue" in bad.stderr
    alert = filled.smarttrade("config", "set", "u1", "alerts", '{"DOL":{"price":-1,"type":"above"}}')
    assert alert.returncode == 1 and alert.stderr.strip() == "alerts.DOL: Expected float > 0.0 - at $.price"
    user = filled.smarttrade("config", "list", "not a user")
    assert user.returncode == 1 and len(user.stderr.strip().splitlines()) == 1 and "user_id" in user.stderr
    assert filled.redis("-n", "5", "GET", "config:u1:theme") == '"dark"'  # refused writes change nothing
    _ok(filled.smarttrade("config", "delete", "u1", "theme"))
    gone = filled.smarttrade("config", "get", "u1", "theme")
    assert gone.returncode == 1 and "not set" in gone.stderr
    assert filled.smarttrade("config", "delete", "u1", "theme").returncode == 1


# -- item 15: `keys` streams ---------------------------------------------------------------------------

MANY = 100_000


def test_keys_streams_a_hundred_thousand_keys(cli: Any, server: Any) -> None:
    with redis.Redis(port=server.port, db=1) as r:
        pipe = r.pipeline(transaction=False)
        for i in range(MANY):  # bounded: MANY keys, sent in batches
            pipe.set(f"orderflow:BENCH:{1_700_000_000 + i}", b'{"symbol":"BENCH","trades":[]}', ex=3600)
            if i % 10_000 == 9_999:
                pipe.execute()
        pipe.execute()
        r.set("foreign:1", "not ours")
    # Run through a small parent of its own, so the peak RSS is this command's alone (pytest's
    # RUSAGE_CHILDREN also holds every redis-server the session has reaped).
    measure = (
        "import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:]).returncode; "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(rc)"
    )
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", measure, _exe(), "keys", "orderflow", "--limit", str(MANY)],
        capture_output=True,
        text=True,
        env={**os.environ, "REDIS_URL": server.url, "COLUMNS": "200"},
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    elapsed = time.monotonic() - started
    _ok(result)
    peak_kib = int(result.stderr.strip().splitlines()[-1])
    lines = result.stdout.splitlines()
    rows = [line.split("\t") for line in lines]
    assert {row[0] for row in rows} == {f"orderflow:BENCH:{1_700_000_000 + i}" for i in range(MANY)}
    assert len(rows) == MANY and all(row[1] == "string" and 0 < int(row[2]) <= 3600 for row in rows)
    assert "100,000 keys" in result.stderr
    assert peak_kib < 200 * 1024, peak_kib  # a table of them took 300 MB
    assert elapsed < 15, elapsed  # generous: about 1 s here, where the table took 20 s
    head = subprocess.run(
        f"{_exe()} keys orderflow --limit {MANY} | head -3",
        shell=True,
        capture_output=True,
        text=True,
        env={**os.environ, "REDIS_URL": server.url},
        timeout=60,
    )
    assert len(head.stdout.splitlines()) == 3 and "Traceback" not in head.stderr
    page = json.loads(_ok(cli.smarttrade("keys", "orderflow", "--limit", "2500", "--json")))
    assert set(page) == {"keys", "cursor"} and len(page["keys"]) >= 2500 and page["cursor"] > 0


def _exe() -> str:
    import shutil
    import sys

    exe = shutil.which("smarttrade", path=str(Path(sys.executable).parent))
    assert exe
    return exe
