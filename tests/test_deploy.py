"""The deploy artifacts (deploy/): Prometheus rules, config and rule tests, the Grafana dashboard and
the systemd units.

promtool comes from $PROMTOOL, else .venv/tools/promtool (``scripts/get-promtool.sh`` puts it there),
else PATH. Without it the promtool tests fail, unless SMARTTRADE_SKIP_PROMTOOL=1 makes them skip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from smarttrade.ops.profile import ROLES

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "smarttrade.json"
SYSTEMD = DEPLOY / "systemd"

# Read at import: conftest's session fixture clears SMARTTRADE_* variables before the tests run.
SKIP_PROMTOOL = os.environ.get("SMARTTRADE_SKIP_PROMTOOL") == "1"

EXPECTED_RULES = 19
MiB = 1024 * 1024

# What `smarttrade exporter` exposes (smarttrade.ops.metrics.METRIC_NAMES). The alert rules and the
# dashboard may only use these names.
EXPECTED = frozenset(
    {
        # redis_exporter-compatible
        "redis_up",
        "redis_uptime_in_seconds",
        "redis_memory_used_bytes",
        "redis_memory_max_bytes",
        "redis_mem_fragmentation_ratio",
        "redis_allocator_frag_ratio",
        "redis_connected_clients",
        "redis_blocked_clients",
        "redis_keyspace_hits_total",
        "redis_keyspace_misses_total",
        "redis_commands_processed_total",
        "redis_evicted_keys_total",
        "redis_expired_keys_total",
        "redis_instantaneous_ops_per_sec",
        "redis_db_keys",
        "redis_db_keys_expiring",
        "redis_rdb_last_save_timestamp_seconds",
        "redis_rdb_changes_since_last_save",
        "redis_rdb_last_bgsave_status",
        # ours
        "smarttrade_script_commands_total",
        "smarttrade_store_hits_total",
        "smarttrade_store_misses_total",
        "smarttrade_store_hit_ratio",
        "smarttrade_ingest_lag_seconds",
        "smarttrade_ingest_batch_size",
        "smarttrade_ingest_max_batch_size",
        "smarttrade_ingest_trades_total",
        "smarttrade_ingest_commits_total",
        "smarttrade_alert_state",
        "smarttrade_alerts_fired_total",
        "smarttrade_last_backup_timestamp_seconds",
        "smarttrade_scrape_duration_seconds",
    }
)


# ---------------------------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def promtool() -> str:
    env = os.environ.get("PROMTOOL")
    if env:
        if not os.access(env, os.X_OK):
            pytest.fail(f"PROMTOOL={env} is not an executable file")
        return env
    local = ROOT / ".venv" / "tools" / "promtool"
    if os.access(local, os.X_OK):
        return str(local)
    found = shutil.which("promtool")
    if found:
        return found
    reason = "promtool not found ($PROMTOOL, .venv/tools/promtool, PATH): run scripts/get-promtool.sh"
    if SKIP_PROMTOOL:
        pytest.skip(f"{reason} (skipped: SMARTTRADE_SKIP_PROMTOOL=1)")
    pytest.fail(f"{reason}, or set SMARTTRADE_SKIP_PROMTOOL=1 to skip these tests")


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def alert_exprs(text: str) -> dict[str, str]:
    """alertname -> expr of a rules file (the subset of YAML it uses: plain, `|` and `>` scalars)."""
    exprs: dict[str, str] = {}
    lines = text.splitlines()
    name = None
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if m := re.match(r"\s*-\s+alert:\s*(\S+)\s*$", line):
            name = m.group(1)
            continue
        m = re.match(r"(\s*)expr:\s*(.*?)\s*$", line)
        if not m:
            continue
        assert name is not None and name not in exprs, f"expr without its own alert at line {i}"
        indent, rest = len(m.group(1)), m.group(2)
        if rest[:1] in ("|", ">"):
            block = []
            while i < len(lines) and (
                not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent
            ):
                block.append(lines[i].strip())
                i += 1
            rest = " ".join(block)
        exprs[name] = rest.strip("'\"")
    return exprs


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row keeps its panels inside


def panel_exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in panels(dashboard) for t in p.get("targets", []) if t.get("expr")]


PROMQL_WORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"inf", "nan", "Inf", "NaN"}
)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression (Grafana variables allowed) selects."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)  # strings
    expr = re.sub(r"\{[^{}]*\}", " ", expr)  # label matchers
    expr = re.sub(r"\[[^\[\]]*\]", " ", expr)  # ranges, subqueries
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", expr)
    expr = re.sub(r"\$\{?\w+\}?", " ", expr)  # Grafana variables
    names = set()
    for m in re.finditer(r"(?<![\w.:])([A-Za-z_:][\w:]*)(\s*\()?", expr):
        if m.group(2) is None and m.group(1) not in PROMQL_WORDS:
            names.add(m.group(1))
    return names


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def used_metric_names() -> set[str]:
    dashboard = load_dashboard()
    exprs = [*alert_exprs(ALERTS.read_text()).values(), *panel_exprs(dashboard)]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            if m := re.fullmatch(r"\s*label_values\((.*),\s*\w+\)\s*", query):
                exprs.append(m.group(1))
    return set().union(*(metric_names(e) for e in exprs))


def unit_settings(path: Path) -> dict[str, dict[str, list[str]]]:
    """section -> key -> values (a key may repeat) of a systemd unit file."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if m := re.fullmatch(r"\[(\w+)\]", line):
            current = sections.setdefault(m.group(1), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def unit_files() -> list[Path]:
    return sorted(p for p in SYSTEMD.iterdir() if p.suffix in (".service", ".timer"))


# ---------------------------------------------------------------------------------------------- promtool


def test_alert_rules_check(promtool: str) -> None:
    proc = run([promtool, "check", "rules", str(ALERTS)], cwd=ROOT)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert re.search(rf"SUCCESS: {EXPECTED_RULES} rules found", out), out
    assert len(alert_exprs(ALERTS.read_text())) == EXPECTED_RULES


def test_prometheus_config_check(promtool: str, tmp_path: Path) -> None:
    # rule_files resolve from the config's directory; run from elsewhere to prove it.
    proc = run([promtool, "check", "config", str(PROMETHEUS / "prometheus.yml")], cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "SUCCESS: 1 rule files found" in out, out
    assert f"SUCCESS: {EXPECTED_RULES} rules found" in out, out
    config = (PROMETHEUS / "prometheus.yml").read_text()
    assert "job_name: smarttrade" in config
    assert '"127.0.0.1:9187"' in config


def test_alert_rule_unit_tests(promtool: str) -> None:
    proc = run([promtool, "test", "rules", "tests.yml"], cwd=PROMETHEUS)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "SUCCESS" in out and "FAILED" not in out, out


def test_dashboard_queries_parse(promtool: str, tmp_path: Path) -> None:
    """Each panel query, with Grafana's variables filled in, is valid PromQL (as a recording rule)."""
    exprs = panel_exprs(load_dashboard())
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for i, expr in enumerate(exprs):
        filled = expr.replace("$__rate_interval", "1m").replace("$instance", ".+")
        assert "$" not in filled, f"unknown Grafana variable in {expr!r}"
        lines += [f"      - record: dashboard:query_{i}", f"        expr: {json.dumps(filled)}"]
    rules = tmp_path / "dashboard-rules.yml"
    rules.write_text("\n".join(lines) + "\n")
    proc = run([promtool, "check", "rules", str(rules)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in proc.stdout


# ---------------------------------------------------------------------------------------------- rules


def test_alert_rules_carry_the_runbook_thresholds() -> None:
    text = ALERTS.read_text()
    exprs = alert_exprs(text)
    assert exprs["RedisMemoryHigh"] == "redis_memory_used_bytes > 400 * 1024 * 1024"
    assert exprs["RedisMemoryCritical"] == "redis_memory_used_bytes > 480 * 1024 * 1024"
    assert "redis_memory_max_bytes > 0" in exprs["RedisMemoryNearMaxmemory"]
    assert exprs["RedisConnectionsHigh"] == "redis_connected_clients > 50"
    assert exprs["RedisConnectionsCritical"] == "redis_connected_clients > 100"
    for name, limit in (("RedisHitRateLow", "0.80"), ("RedisHitRateCritical", "0.50")):
        assert f"< {limit}" in exprs[name]
        assert "rate(redis_keyspace_misses_total[5m])) > 0" in exprs[name], "division not guarded"
    client_ops = "rate(redis_commands_processed_total[1m]) - rate(smarttrade_script_commands_total[1m])"
    assert exprs["RedisOpsHigh"] == f"{client_ops} > 1000"
    assert exprs["RedisOpsCritical"] == f"{client_ops} > 50000"
    assert exprs["RedisDown"] == "redis_up == 0"
    assert "> 26 * 3600" in exprs["SmartTradeBackupStale"]
    assert "> 50 * 3600" in exprs["SmartTradeBackupStaleCritical"]
    assert exprs["SmartTradeBackupMissing"] == "smarttrade_last_backup_timestamp_seconds == 0"
    assert exprs["SmartTradeBackupMetricAbsent"].startswith(
        "absent(smarttrade_last_backup_timestamp_seconds)"
    )
    assert exprs["SmartTradeIngestLag"] == "smarttrade_ingest_lag_seconds > 1"
    assert exprs["SmartTradeIngestLagCritical"] == "smarttrade_ingest_lag_seconds > 5"
    store_rule = exprs["SmartTradeStoreHitRatioLow"]  # over a window, not the cumulative ratio
    assert (
        store_rule.startswith("( rate(smarttrade_store_hits_total[10m]) / (") and ") < 0.8 and" in store_rule
    )
    assert "name: smarttrade\n" in text
    # every rule: a severity, a `for:`, a summary and a description
    assert text.count("severity: warning") + text.count("severity: critical") == EXPECTED_RULES
    for key in ("for:", "summary:", "description:"):
        assert text.count(f"{key} ") == EXPECTED_RULES, key


def test_metric_name_extraction() -> None:
    expr = (
        'sum by (check, level) (increase(smarttrade_alerts_fired_total{instance=~"$instance",'
        ' job="a b"}[1h])) / on (x) group_left (y) redis_up offset 5m > 1e3 and time() - foo:bar'
    )
    assert metric_names(expr) == {"smarttrade_alerts_fired_total", "redis_up", "foo:bar"}
    assert metric_names("rate(x[$__rate_interval]) > bool 0 unless absent(y)") == {"x", "y"}


def test_artifacts_use_only_exporter_metrics() -> None:
    used = used_metric_names()
    assert len(used) >= 20, used  # the extraction found the queries
    assert used <= EXPECTED, f"not exposed by the exporter: {sorted(used - EXPECTED)}"


def test_exporter_exposes_the_metrics_used() -> None:
    from smarttrade.ops.metrics import METRIC_NAMES

    used = used_metric_names()
    assert set(METRIC_NAMES) >= used, f"missing from METRIC_NAMES: {sorted(used - set(METRIC_NAMES))}"


# ---------------------------------------------------------------------------------------------- grafana


def test_dashboard_structure() -> None:
    dashboard = load_dashboard()
    assert 36 <= dashboard["schemaVersion"] <= 40
    assert dashboard["uid"] and dashboard["title"]
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["instance"]["type"] == "query"
    assert variables["instance"]["definition"] == "label_values(redis_up, instance)"

    all_panels = list(panels(dashboard))
    ids = [p["id"] for p in all_panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    graphs = [p for p in all_panels if p["type"] != "row"]
    assert len(graphs) >= 13
    for panel in graphs:
        assert panel.get("targets"), f"panel {panel['title']!r} has no query"
        assert all(t.get("expr") and t.get("refId") for t in panel["targets"]), panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]
            assert 'instance=~"$instance"' in target["expr"], target["expr"]

    shown = set().union(*(metric_names(e) for e in panel_exprs(dashboard)))
    must_show = {
        "redis_memory_used_bytes",
        "redis_memory_max_bytes",
        "redis_commands_processed_total",
        "redis_connected_clients",
        "redis_keyspace_hits_total",
        "redis_keyspace_misses_total",
        "smarttrade_store_hit_ratio",
        "redis_evicted_keys_total",
        "redis_expired_keys_total",
        "redis_db_keys",
        "redis_mem_fragmentation_ratio",
        "smarttrade_ingest_lag_seconds",
        "smarttrade_ingest_batch_size",
        "smarttrade_ingest_trades_total",
        "smarttrade_alert_state",
        "smarttrade_last_backup_timestamp_seconds",
    }
    assert must_show <= shown, sorted(must_show - shown)


@pytest.mark.parametrize(
    ("metric", "threshold"),
    [
        ("redis_memory_used_bytes", 400 * MiB),
        ("redis_connected_clients", 50),
        ("redis_keyspace_hits_total", 0.8),
        ("redis_commands_processed_total", 1000),
        ("smarttrade_last_backup_timestamp_seconds", 26 * 3600),
    ],
)
def test_dashboard_stat_thresholds_match_the_runbook(metric: str, threshold: float) -> None:
    stats = [
        p
        for p in panels(load_dashboard())
        if p["type"] == "stat" and any(metric in metric_names(t["expr"]) for t in p["targets"])
    ]
    assert stats, f"no stat panel shows {metric}"
    for panel in stats:
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert threshold in [s["value"] for s in steps], (panel["title"], steps)


# ---------------------------------------------------------------------------------------------- systemd


def test_systemd_units_verify() -> None:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze is not installed")
    units = unit_files()
    # the binaries of the target host (/opt/smarttrade/.venv/bin/smarttrade, maybe redis-server) are
    # not here: verify says so, and that is all it may say
    exec_paths = {
        value.lstrip("-@:+!").split()[0]
        for unit in units
        for key, values in unit_settings(unit).get("Service", {}).items()
        if key.startswith("Exec")
        for value in values
    }
    proc = run([exe, "verify", "--man=no", *map(str, units)], cwd=SYSTEMD)
    complaints = []
    for line in (proc.stdout + proc.stderr).splitlines():
        if not line.strip():
            continue
        if any(p in line for p in exec_paths) and ("is not executable" in line or "No such file" in line):
            continue
        if (m := re.match(r"(/\S+?):\d+: ", line)) and Path(m.group(1)).parent != SYSTEMD:
            continue  # a distribution unit this host ships, not ours
        complaints.append(line)
    assert not complaints, "\n".join(complaints)
    if proc.returncode != 0:
        assert proc.stdout + proc.stderr, f"systemd-analyze verify exited {proc.returncode} silently"


def test_systemd_units_settings() -> None:
    units = {p.name: unit_settings(p) for p in unit_files()}
    assert set(units) == {
        "smarttrade-redis.service",
        "smarttrade-ingest.service",
        "smarttrade-gateway.service",
        "smarttrade-exporter.service",
        "smarttrade-backup.service",
        "smarttrade-backup.timer",
        "smarttrade-alerts.service",
        "smarttrade-alerts.timer",
    }
    redis = units["smarttrade-redis.service"]["Service"]
    assert redis["Type"] == ["notify"]
    assert "--supervised systemd" in redis["ExecStart"][0], "Type=notify needs --supervised systemd"
    assert redis["ExecStart"][0].startswith("/usr/bin/redis-server /etc/smarttrade/redis.conf")
    assert redis["User"] == ["redis"]
    assert redis["LimitNOFILE"]
    for key, value in (("ProtectSystem", "full"), ("PrivateTmp", "true"), ("NoNewPrivileges", "true")):
        assert redis[key] == [value], key
    assert "/var/lib/smarttrade/redis" in redis["ReadWritePaths"]

    bin_ = "/opt/smarttrade/.venv/bin/smarttrade"
    commands = {  # each unit connects as its own ACL user (ops/profile.py ROLES), from its own file
        "smarttrade-ingest.service": ("ingest", f"{bin_} ingest $SMARTTRADE_INGEST_ARGS"),
        "smarttrade-gateway.service": ("gateway", f"{bin_} gateway"),
        "smarttrade-exporter.service": ("exporter", f"{bin_} exporter --port 9187"),
        "smarttrade-backup.service": ("backup", f"{bin_} backup"),
        "smarttrade-alerts.service": ("exporter", f"{bin_} alerts --json"),
    }
    for name, (role, command) in commands.items():
        assert role in ROLES, role
        service = units[name]["Service"]
        assert service["ExecStart"] == [command], name
        assert service["EnvironmentFile"] == [
            "/etc/smarttrade/smarttrade.env",
            f"/etc/smarttrade/acl-{role}.env",
        ], name
        assert "smarttrade-redis.service" in " ".join(units[name]["Unit"]["After"]), name

    ingest = units["smarttrade-ingest.service"]
    assert "smarttrade-redis.service" in ingest["Unit"]["Requires"]
    assert ingest["Service"]["Restart"] == ["always"]

    assert units["smarttrade-backup.service"]["Service"]["Type"] == ["oneshot"]
    backup_timer = units["smarttrade-backup.timer"]["Timer"]
    assert backup_timer["OnCalendar"] == ["*-*-* 02:30:00"]
    assert backup_timer["Persistent"] == ["true"]
    assert backup_timer["RandomizedDelaySec"]

    alerts = units["smarttrade-alerts.service"]["Service"]
    assert alerts["Type"] == ["oneshot"]
    assert alerts["SuccessExitStatus"] == ["1"], "warnings (exit 1) ok, criticals (exit 2) fail the unit"
    assert units["smarttrade-alerts.timer"]["Timer"]["OnCalendar"] == ["*:0/5"]

    env = (SYSTEMD / "smarttrade.env.example").read_text()
    assert "profile render --secrets /etc/smarttrade/acl.env" in env  # where the units' URLs come from
    for key in (
        "SMARTTRADE_DATA_DIR=",
        "SMARTTRADE_BACKUP_DIR=",
        "SMARTTRADE_INGEST_ARGS=",
    ):
        assert re.search(rf"^{re.escape(key)}", env, re.MULTILINE), key


def test_get_promtool_script_parses() -> None:
    script = ROOT / "scripts" / "get-promtool.sh"
    assert os.access(script, os.X_OK)
    proc = run(["bash", "-n", str(script)], cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
