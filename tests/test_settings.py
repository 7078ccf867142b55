"""Settings from env and .env: contract defaults, and one clear line for every bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from smarttrade.errors import SettingsError
from smarttrade.keyspace import SPECS, Store
from smarttrade.settings import load_settings
from tests.conftest import run_smarttrade


def test_contract_defaults() -> None:
    s = load_settings()
    assert s.redis_url is None
    assert {st: s.db(st) for st in Store} == {st: SPECS[st].default_db for st in Store}
    assert [s.ttl(st) for st in Store] == [60, 300, 600, 1800, 3600, None]


def test_env_and_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("REDIS_TTL_QUOTES=30\nREDIS_DB_CONFIG=9\n")
    monkeypatch.setenv("REDIS_DB_CONFIG", "7")  # the environment wins over .env
    s = load_settings()
    assert s.ttl(Store.QUOTES) == 30
    assert s.db(Store.CONFIG) == 7


@pytest.mark.parametrize(
    ("var", "value", "reason"),
    [
        ("REDIS_DB_QUOTES", "16", "must be a database number from 0 to 15 (got '16')"),
        ("REDIS_DB_SESSIONS", "-1", "must be a database number from 0 to 15 (got '-1')"),
        ("REDIS_DB_CONFIG", "five", "must be a database number from 0 to 15 (got 'five')"),
        ("REDIS_TTL_CALC", "0", "must be a positive whole number (got '0')"),
        ("REDIS_TTL_ORDERFLOW", "-300", "must be a positive whole number (got '-300')"),
        ("REDIS_TTL_FOOTPRINT", "1.5", "must be a positive whole number (got '1.5')"),
        ("REDIS_TTL_SESSIONS", "1h", "must be a positive whole number (got '1h')"),
        ("REDIS_URL", "http://localhost:6379", "scheme must be redis://, rediss:// or unix://"),
        ("REDIS_URL", "redis://localhost:port", "cannot parse"),
        ("REDIS_URL", "redis://", "no host"),
        ("REDIS_URL", "redis://localhost/99", "database in the URL path must be 0-15"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, var: str, value: str, reason: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert info.value.variable == var
    assert reason in info.value.reason


def test_password_is_not_echoed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REDIS_URL", "redis://:s3cret@localhost:bad")
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
