"""Settings from env and .env: contract defaults, and one clear line for every bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from smarttrade.errors import SettingsError
from smarttrade.keyspace import SPECS, Store
from smarttrade.settings import Settings, _default_data_dir, load_settings, parse_addrs
from tests.conftest import run_smarttrade


@pytest.fixture(autouse=True)
def _neutral_cwd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every test here runs in an empty folder, so a developer's .env cannot steer it.

    (pydantic-settings reads ``.env`` from the working directory.)
    """
    monkeypatch.chdir(tmp_path)


def test_contract_defaults() -> None:
    s = load_settings()
    assert s.redis_url is None
    assert {st: s.db(st) for st in Store} == {st: SPECS[st].default_db for st in Store}
    assert [s.ttl(st) for st in Store] == [60, 300, 600, 1800, 3600, None]
    assert (s.redis_max_connections, s.smarttrade_maxmemory) == (24, "512mb")


def test_env_and_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("REDIS_TTL_QUOTES=30\nREDIS_DB_CONFIG=9\n")
    monkeypatch.setenv("REDIS_DB_CONFIG", "7")  # the environment wins over .env
    s = load_settings()
    assert s.ttl(Store.QUOTES) == 30
    assert s.db(Store.CONFIG) == 7


def test_dotenv_bad_value_names_the_variable(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SMARTTRADE_MAXMEMORY=lots\n")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert info.value.variable == "SMARTTRADE_MAXMEMORY"


DB_VARS = [f"REDIS_DB_{s}" for s in ("QUOTES", "ORDERFLOW", "FOOTPRINT", "CALC", "SESSIONS", "CONFIG")]
TTL_VARS = [f"REDIS_TTL_{s}" for s in ("QUOTES", "ORDERFLOW", "FOOTPRINT", "CALC", "SESSIONS")]
DB_REASON = "must be a database number from 0 to 15 (got {!r})"
TTL_REASON = "must be a positive whole number (got {!r})"
TTL_CAP_REASON = "must be 315360000 seconds (10 years) or less (got {!r})"
CONN_REASON = "must be a whole number from 1 to 1000 (got {!r})"
MEM_REASON = "must be a Redis memory size such as 512mb, 2gb or 1073741824 (got {!r})"
URL_DB_REASON = "do not put a database in the URL (got {!r}); the stores' databases come from REDIS_DB_*"

BAD_VALUES = [
    *[(var, value, DB_REASON.format(value)) for var in DB_VARS for value in ("16", "-1", "five", "1.0", "²")],
    *[(var, value, TTL_REASON.format(value)) for var in TTL_VARS for value in ("0", "-300", "1.5", "1h")],
    *[(var, value, TTL_CAP_REASON.format(value)) for var in TTL_VARS for value in ("315360001", "9" * 5000)],
    *[("REDIS_MAX_CONNECTIONS", value, CONN_REASON.format(value)) for value in ("0", "1001", "-5", "many")],
    *[
        ("SMARTTRADE_MAXMEMORY", v, MEM_REASON.format(v))
        for v in ("lots", "512 mb", "1.5gb", "-1", "2tb", "mb")
    ],
    *[("SMARTTRADE_MAXMEMORY", v, "must be at least 32mb") for v in ("1", "0", "100k", "31mb")],
    *[("SMARTTRADE_FULL_WAIT", v, "must be") for v in ("0", "-1", "nan", "3601")],
    *[
        ("SMARTTRADE_INGEST_LEASE_S", v, "must be whole seconds from 2 to 3600")
        for v in ("1", "3601", "5.5", "x")
    ],
    ("SMARTTRADE_SYMBOLS", "BTCUSDT", "is not ROOT:TICK:QTY_DECIMALS[:PRICE_SCALE]"),
    ("SMARTTRADE_ANALYTICS", "maybe", "valid boolean"),
    ("SMARTTRADE_TIMEFRAMES", "1m,7m", "timeframe '7m' must divide an hour, or a day"),
    ("SMARTTRADE_TIMEFRAMES", "fast", "timeframe 'fast' is not like 1m"),
    ("SMARTTRADE_TIMEFRAMES", "5h", "must divide an hour, or a day in whole hours"),
    ("SMARTTRADE_SESSIONS", "regular", "is not NAME=HH:MM-HH:MM"),
    ("SMARTTRADE_SESSIONS", "a=09:00-12:00,b=11:00-13:00", "overlap"),
    ("SMARTTRADE_IMBALANCE_RATIO", "-3", "must be a positive number"),
    ("SMARTTRADE_IMBALANCE_RATIO", "inf", "must be a positive number"),
    ("SMARTTRADE_IMBALANCE_MIN_VOLUME", "0", "must be a positive amount in the instrument's units"),
    ("SMARTTRADE_SYMBOLS", "WIN:5:0:10", "WIN is a built-in B3 contract (WIN:5:0:1@B3); it cannot be"),
    ("SMARTTRADE_SYMBOLS", "BTCUSDT:0.01:5,BTCUSDT:0.1:5", "conflicts with BTCUSDT:0.01:5:100@UTC"),
    ("SMARTTRADE_SYMBOLS", "ES:0.25:0@Mars/Base", "unknown time zone 'Mars/Base'"),
    ("SMARTTRADE_SESSIONS", "a=09:00-24:30", "00:00 to 24:00"),
    ("SMARTTRADE_STACKED_LEVELS", "two", "must be a whole number from 1"),
    ("SMARTTRADE_VALUE_AREA", "1.5", "must be between 0 and 1"),
    ("SMARTTRADE_SYMBOLS", "BTCUSDT:0.1:6,ETH:x:2", "TICK is a decimal"),
    ("REDIS_RENAMED_COMMANDS", "CONFIG", "'CONFIG' is not COMMAND=NEW_NAME"),
    ("REDIS_RENAMED_COMMANDS", "CONFIG=a b", "is not COMMAND=NEW_NAME"),
    ("SMARTTRADE_BACKUP_KEEP", "0", "must be a whole number from 1"),
    *[
        (f"SMARTTRADE_ALERT_MEMORY_{level}", v, "must be a size such as 400mb or a percentage")
        for level in ("WARN", "CRIT")
        for v in ("lots", "0%", "101%", "-5%")
    ],
    *[
        (f"SMARTTRADE_ALERT_CLIENTS_{level}", "0", "must be a whole number from 1")
        for level in ("WARN", "CRIT")
    ],
    *[(f"SMARTTRADE_ALERT_HIT_RATE_{level}", "80", "must be between 0 and 1") for level in ("WARN", "CRIT")],
    *[(f"SMARTTRADE_ALERT_OPS_{level}", "-1", "must be a whole number from 1") for level in ("WARN", "CRIT")],
    *[
        (f"SMARTTRADE_ALERT_BACKUP_{level}_HOURS", v, "must be")
        for level in ("WARN", "CRIT")
        for v in ("0", "never", "99999")
    ],
    ("REDIS_URL", "http://localhost:6380", "scheme must be redis://, rediss:// or unix://"),
    ("REDIS_URL", "redis://localhost:port", "cannot parse"),
    ("REDIS_URL", "redis://", "no host"),
    ("REDIS_URL", "redis://127.0.0.1:", "empty port"),
    ("REDIS_URL", "redis://:secret@[::1]:", "empty port"),
    ("REDIS_URL", "redis://localhost/3", URL_DB_REASON.format("/3")),
    ("REDIS_URL", "redis://localhost:6380/0", URL_DB_REASON.format("/0")),
    ("REDIS_URL", "rediss://localhost/99", URL_DB_REASON.format("/99")),
    ("REDIS_URL", "redis://localhost?db=3", URL_DB_REASON.format("?db=3")),
    ("REDIS_URL", "redis://localhost/?password=x&db=3", URL_DB_REASON.format("?db=3")),
    ("REDIS_URL", "unix:///tmp/redis.sock?db=3", URL_DB_REASON.format("?db=3")),
    ("SMARTTRADE_GATEWAY_SECRET", "short", "must be at least 32 characters (got 5)"),
    ("SMARTTRADE_GATEWAY_HOST", "", "must not be empty"),
    *[("SMARTTRADE_GATEWAY_PORT", v, "must be a TCP port from 0 to 65535") for v in ("65536", "-1", "http")],
    ("REDIS_MODE", "replicated", "must be one of standalone, sentinel, cluster"),
    *[("REDIS_SENTINELS", v, "is not host:port") for v in ("localhost", "a:1,b", "h:0", "h:70000", ":26379")],
    ("REDIS_CLUSTER_NODES", "127.0.0.1:7000,127.0.0.1", "'127.0.0.1' is not host:port"),
    ("REDIS_SENTINEL_MASTER", "my master", "must be a sentinel master name"),
    *[
        (f"REDIS_TLS_{f}", "/nonexistent/file.pem", "no such file: /nonexistent/file.pem")
        for f in ("CA", "CERT", "KEY")
    ],
    ("REDIS_WAIT_REPLICAS", "many", "must be a number of replicas from 0 to 16"),
    ("REDIS_WAIT_TIMEOUT_MS", "0", "must be a whole number from 1"),
]

# Each mode's own settings must come with it; the error names the one that is missing or wrong.
INCOMPLETE_TOPOLOGIES = [
    ({"REDIS_MODE": "sentinel"}, "REDIS_SENTINELS", "must list the sentinels"),
    ({"REDIS_MODE": "cluster"}, "REDIS_CLUSTER_NODES", "must list seed nodes"),
    (
        {"REDIS_MODE": "cluster", "REDIS_CLUSTER_NODES": "h:1", "REDIS_DB_CALC": "3"},
        "REDIS_DB_CALC",
        "database 0 only",
    ),
]


@pytest.mark.parametrize(("env", "var", "reason"), INCOMPLETE_TOPOLOGIES)
def test_incomplete_topology_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], var: str, reason: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert info.value.variable == var
    assert reason in info.value.reason


def test_client_certificate_needs_its_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cert = tmp_path / "client.pem"
    cert.write_text("x")
    monkeypatch.setenv("REDIS_TLS_CERT", str(cert))
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert info.value.variable == "REDIS_TLS_KEY"


def test_tls_files_with_a_plain_url_are_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A CA beside redis:// would otherwise connect in plain text, silently."""
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    monkeypatch.setenv("REDIS_TLS_CA", str(ca))
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6390")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert info.value.variable == "REDIS_URL" and "use rediss://" in info.value.reason


def test_cluster_puts_every_store_in_database_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_MODE", "cluster")
    monkeypatch.setenv("REDIS_CLUSTER_NODES", "127.0.0.1:7000, 127.0.0.1:7001")
    settings = load_settings()
    assert {settings.db(s) for s in Store} == {0}
    assert parse_addrs(settings.redis_cluster_nodes) == [("127.0.0.1", 7000), ("127.0.0.1", 7001)]


@pytest.mark.parametrize(("var", "value", "reason"), BAD_VALUES)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, reason: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert info.value.variable == var
    assert reason in info.value.reason


def test_every_variable_is_checked() -> None:
    tested = {var for var, _, _ in BAD_VALUES}
    assert tested == {name.upper() for name in Settings.model_fields} - {
        "SMARTTRADE_DATA_DIR",
        "SMARTTRADE_BACKUP_DIR",
    }


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        ("REDIS_TTL_CALC", "315360000", 315_360_000),
        ("REDIS_TTL_QUOTES", " 1 ", 1),
        ("REDIS_DB_CALC", "15", 15),
        ("REDIS_MAX_CONNECTIONS", "1", 1),
        ("REDIS_MAX_CONNECTIONS", "1000", 1000),
        ("SMARTTRADE_MAXMEMORY", "2GB", "2GB"),
        ("SMARTTRADE_MAXMEMORY", "1073741824", "1073741824"),
        ("SMARTTRADE_MAXMEMORY", "32mb", "32mb"),  # the minimum
        ("SMARTTRADE_MAXMEMORY", "64Mb", "64Mb"),
        ("REDIS_URL", "redis://localhost:6380", "redis://localhost:6380"),
        ("REDIS_URL", "redis://localhost:6380/", "redis://localhost:6380/"),
        (
            "REDIS_URL",
            "rediss://u:p@host:6380/?ssl_cert_reqs=none",
            "rediss://u:p@host:6380/?ssl_cert_reqs=none",
        ),
        ("REDIS_URL", "unix:///tmp/redis.sock", "unix:///tmp/redis.sock"),
        ("SMARTTRADE_DATA_DIR", "", _default_data_dir()),  # empty: the default, not the cwd
        ("SMARTTRADE_DATA_DIR", " /srv/st ", Path("/srv/st")),
    ],
)
def test_good_values(monkeypatch: pytest.MonkeyPatch, var: str, value: str, expected: object) -> None:
    monkeypatch.setenv(var, value)
    assert getattr(load_settings(), var.lower()) == expected


@pytest.mark.parametrize(
    "url", ["redis://:s3cret@localhost:bad", "redis://:s3cret@localhost/3", "redis://h/?password=s3cret&db=3"]
)
def test_password_is_not_echoed(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("REDIS_URL", url)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "s3cret" not in str(info.value)


def test_cli_stops_with_one_line(tmp_path: Path) -> None:
    import os

    env = {**os.environ, "REDIS_TTL_QUOTES": "0", "SMARTTRADE_DATA_DIR": str(tmp_path)}
    result = run_smarttrade("status", env=env)
    assert result.returncode == 2
    assert result.stderr.strip() == "REDIS_TTL_QUOTES: must be a positive whole number (got '0')"
    assert result.stdout == ""
    assert not (tmp_path / "server.json").exists()  # nothing was started
