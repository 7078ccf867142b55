"""One connection pool per Redis database, with retries set explicitly and a bounded total.

redis-py never switches databases on pooled connections, so each store's db gets its own pool; the
per-process connection total (REDIS_MAX_CONNECTIONS) is split across them and stays well below the
runbook's 50-connection alert.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
import redis.exceptions as rexc
from redis.asyncio.retry import Retry
from redis.backoff import ConstantBackoff, NoBackoff

from smarttrade.errors import DecodeError, OutOfMemory, RedisUnavailable, SmartTradeError, redact
from smarttrade.redis.nodes import TopologyView, replication_views

# The seed's ioredis settings: 3 tries per request, 100 ms apart. Only connection failures are
# retried: a command that timed out may have run, and a script must not run twice.
RETRIES = 2  # after the first try
BACKOFF_S = 0.1
CONNECT_TIMEOUT_S = 2.0
SOCKET_TIMEOUT_S = 5.0  # a reply slower than this counts as a failure (and is retried)
FIRST_PING_S = 5.0  # the start-up check gives up on a server that accepts but never answers
POOL_WAIT_S = 10.0
# A server answers -LOADING while it reads its RDB/AOF after a start: wait for it, this long at
# most (a 512mb dataset loads in seconds; a slow disk or a much larger one may need minutes).
LOADING_WAIT_S = 300.0
LOADING_POLL_S = 0.2
LOADING_REPORT_S = 2.0  # one progress line this often, whole lines (pipes and journals too)


# What a Redis call can fail with: redis-py's errors, the cluster client's own (not a RedisError:
# "cannot be connected", a slot not covered), and the OS's.
REDIS_FAILURES: tuple[type[BaseException], ...] = (rexc.RedisError, rexc.RedisClusterException, OSError)


def one_line_reason(exc: BaseException) -> str:
    """The most useful one-line reason: the OS error under redis-py's wrapper when there is one."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return (
                f"TLS: the server's certificate is not trusted ({seen.verify_message}); "
                "REDIS_TLS_CA names the CA that signed it"
            )
        if isinstance(seen, ssl.SSLError):  # its errno is a library code, not an OS error
            return f"TLS handshake failed: {str(seen.reason or seen).lower().replace('_', ' ')}"
        if isinstance(seen, OSError) and seen.errno:
            return os.strerror(seen.errno)
        seen = seen.__cause__ or seen.__context__
    text = str(exc).strip() or type(exc).__name__
    if "authenticated" in text or text.startswith(("NOAUTH", "Authentication required")):
        return "the server needs a password: put it in REDIS_URL (redis://USER:PASSWORD@host:port)"
    return text.splitlines()[0]


def _oom_message(url: str, reason: str) -> str:
    return (
        f"Redis at {redact(url)} refused a write: maxmemory reached and nothing evictable ({reason.strip()})"
    )


@contextmanager
def redis_errors(url: str, where: str | None = None) -> Iterator[None]:
    """Turn redis-py's failures into our one-line errors; ``where`` names the key at stake."""
    try:
        yield
    except rexc.OutOfMemoryError as exc:
        raise OutOfMemory(_oom_message(url, one_line_reason(exc))) from None
    except rexc.MaxConnectionsError:
        raise SmartTradeError(_POOL_EXHAUSTED) from None
    except (rexc.ConnectionError, rexc.TimeoutError, OSError) as exc:
        if "No connection available" in str(exc):
            raise SmartTradeError(_POOL_EXHAUSTED) from None
        raise RedisUnavailable(redact(url), one_line_reason(exc)) from None
    except rexc.RedisClusterException as exc:  # no node reachable, a slot not served
        raise RedisUnavailable(redact(url), one_line_reason(exc)) from None
    except rexc.InvalidResponse as exc:  # e.g. an HTTP server answering "HTTP/1.1 400"
        raise RedisUnavailable(redact(url), f"not a Redis server ({one_line_reason(exc)})") from None
    except rexc.ResponseError as exc:
        text = str(exc).strip()
        if text.startswith(("NOAUTH", "WRONGPASS", "NOPERM")):
            raise RedisUnavailable(redact(url), one_line_reason(exc)) from None
        if "-OOM " in text:  # Redis 6.2 reports OOM inside a script as a script error
            raise OutOfMemory(_oom_message(url, text.partition("-OOM ")[2])) from None
        if where and (text.startswith("WRONGTYPE") or "not changed" in text or "not a number" in text):
            raise DecodeError(where, text) from None  # the stored value is not what the store holds
        target = f" ({where})" if where else ""
        raise SmartTradeError(f"Redis at {redact(url)} refused the command{target}: {text}") from None


_POOL_EXHAUSTED = (
    "no free Redis connection within the pool wait; raise REDIS_MAX_CONNECTIONS or lower the load"
)


async def loading_progress(client: aioredis.Redis) -> str:
    """How far a loading server is, from INFO persistence (which it answers while loading)."""
    try:
        info = await client.info("persistence")
    except (rexc.RedisError, OSError):
        return "progress unknown"
    if not int(info.get("loading", 0)):
        return "done"
    perc = float(str(info.get("loading_loaded_perc", 0)).rstrip("%"))
    eta = int(info.get("loading_eta_seconds", -1))
    loaded = int(info.get("loading_loaded_bytes", 0))
    text = f"{perc:.1f}% ({loaded / 2**20:,.0f} MiB read)"
    return text + (f", about {eta} s left" if eta >= 0 else "")


def credentials(url: str | None) -> dict[str, object]:
    """The user and password of REDIS_URL, for the nodes of a sentinel or cluster topology."""
    if not url:
        return {}
    parts = urlsplit(url)
    out: dict[str, object] = {}
    if parts.username:
        out["username"] = unquote(parts.username)
    if parts.password:
        out["password"] = unquote(parts.password)
    return out


def connection_kwargs(socket_timeout: float = SOCKET_TIMEOUT_S) -> dict[str, object]:
    """Timeouts, retries and the client name every connection of ours uses, whatever the mode."""
    return {
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "socket_timeout": socket_timeout,
        "retry": Retry(ConstantBackoff(BACKOFF_S), RETRIES, supported_errors=(rexc.ConnectionError,)),
        "health_check_interval": 30,
        "client_name": "smarttrade",
    }


class NodeClients:
    """A plain client per node (host:port), made on first use with the topology's arguments and
    closed with it: for commands that must reach one given server (INFO, CONFIG, SCAN, BGSAVE)."""

    def __init__(self, kwargs: Mapping[str, object], max_connections: int = 4) -> None:
        self.kwargs = dict(kwargs)
        self.max_connections = max_connections
        self._clients: dict[str, aioredis.Redis] = {}

    def get(self, host: str, port: int) -> aioredis.Redis:
        name = f"{host}:{port}"
        client = self._clients.get(name)
        if client is None:
            client = aioredis.Redis(host=host, port=port, max_connections=self.max_connections, **self.kwargs)  # type: ignore[arg-type]
            self._clients[name] = client
        return client

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()


class RedisPools:
    """Async clients keyed by database number, sharing one connection budget."""

    def __init__(
        self,
        url: str,
        dbs: set[int] | list[int],
        max_connections: int,
        socket_timeout: float = SOCKET_TIMEOUT_S,
        tls: Mapping[str, object] | None = None,
    ) -> None:
        self.url = url
        self.tls = dict(tls or {})
        dbs = sorted(set(dbs))
        per_pool = max(2, max_connections // max(1, len(dbs)))
        self.max_connections = per_pool * len(dbs)
        self._clients: dict[int, aioredis.Redis] = {}
        for db in dbs:
            pool = aioredis.BlockingConnectionPool.from_url(
                url,
                db=db,
                max_connections=per_pool,
                timeout=POOL_WAIT_S,
                **connection_kwargs(socket_timeout),
                **{k: v for k, v in (tls or {}).items() if k != "ssl"},  # rediss:// says ssl already
            )
            # Retries live on the connections; a client-level retry would multiply them.
            self._clients[db] = aioredis.Redis(connection_pool=pool, retry=Retry(NoBackoff(), 0))

    def primaries(self) -> list[aioredis.Redis]:
        """The one server (its databases are told apart by ``client(db)``)."""
        return [next(iter(self._clients.values()))]

    async def describe(self) -> TopologyView:
        """The server and the replicas it reports."""
        client = self.primaries()[0]
        kwargs = client.connection_pool.connection_kwargs
        addr = str(kwargs.get("path") or f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}")
        with redis_errors(self.url):
            info = await client.info("replication")
        return TopologyView("standalone", bool(self.tls), replication_views(addr, info))

    def client(self, db: int) -> aioredis.Redis:
        try:
            return self._clients[db]
        except KeyError:
            raise ValueError(f"no pool for database {db}") from None

    async def ping(self, on_loading: Callable[[str], None] | None = None) -> None:
        """Raise RedisUnavailable with the reason if the server does not answer.

        A server still loading its dataset answers -LOADING to every data command: wait until it
        is done (at most LOADING_WAIT_S), telling ``on_loading`` how far it is now and then.
        """
        client = next(iter(self._clients.values()))
        started = time.monotonic()
        reported = 0.0
        with redis_errors(self.url):
            while True:
                try:
                    await asyncio.wait_for(client.ping(), FIRST_PING_S)
                    return
                except TimeoutError:
                    raise RedisUnavailable(redact(self.url), f"no reply within {FIRST_PING_S:g} s") from None
                except rexc.BusyLoadingError:
                    pass
                progress = await loading_progress(client)
                waited = time.monotonic() - started
                if waited > LOADING_WAIT_S:
                    raise RedisUnavailable(
                        redact(self.url), f"still loading its dataset after {waited:.0f} s ({progress})"
                    )
                now = time.monotonic()
                if on_loading is not None and (not reported or now - reported >= LOADING_REPORT_S):
                    reported = now
                    on_loading(f"Redis at {redact(self.url)} is loading its dataset: {progress}; waiting")
                await asyncio.sleep(LOADING_POLL_S)

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose(close_connection_pool=True)  # the pool was passed in: not closed by default
