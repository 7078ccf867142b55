"""Administrative commands that a hardened server may rename, disable or deny by ACL.

Production configs rename CONFIG, KEYS, FLUSHDB and FLUSHALL (the runbook does) and give the app's
ACL users only what they need. Every ops command goes through ``Admin``, which sends the name
REDIS_RENAMED_COMMANDS gives and turns "unknown command" and NOPERM into ``CommandUnavailable``,
so each caller can fall back (INFO instead of CONFIG GET, SCAN+UNLINK instead of FLUSHDB) or say
plainly what is missing.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
import redis.exceptions as rexc

from smarttrade.errors import SmartTradeError, redact
from smarttrade.redis.connections import redis_errors
from smarttrade.settings import Settings


class CommandUnavailable(SmartTradeError):
    """The server will not run this command for us: renamed, disabled or denied."""

    def __init__(self, command: str, reason: str) -> None:
        super().__init__(f"{command} is not available: {reason}")
        self.command = command
        self.reason = reason


def as_text(value: Any) -> str:
    """A raw reply (bytes or str) as text."""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def client_addr(client: Any) -> str | None:
    """host:port (or a unix socket's path) a plain client connects to; None when its pool picks
    the server itself (a sentinel-managed pool)."""
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
    if "host" in kwargs:
        return f"{kwargs['host']}:{kwargs.get('port', 6379)}"
    return str(kwargs["path"]) if kwargs.get("path") else None


class Admin:
    """One client plus the server's command names; ``call`` is the only way ops code talks to it."""

    def __init__(self, client: aioredis.Redis, settings: Settings, url: str) -> None:
        self.client = client
        self.url = url
        self.renamed = settings.renamed()

    def on(self, client: aioredis.Redis) -> Admin:
        """The same server and names over another client (another database's pool)."""
        other = Admin.__new__(Admin)
        other.client, other.url, other.renamed = client, self.url, self.renamed
        return other

    def plain(self) -> aioredis.Redis:
        """The client, checked to reach one server: a cluster client would send a server-wide
        command to a node of its choosing and has no single pool to read a reply from."""
        if not hasattr(self.client, "connection_pool"):
            raise TypeError(
                "Admin needs a client of one server, not a cluster client: "
                "take one Admin per node (ops/nodes.py: data_nodes, primary_admins)"
            )
        return self.client

    @property
    def addr(self) -> str:
        """host:port of the server (the unix socket's path, or the URL, when it has none)."""
        return client_addr(self.client) or self.where()

    def name(self, command: str) -> str:
        """The server's name for ``command`` (upper case); CommandUnavailable when disabled."""
        command = command.upper()
        name = self.renamed.get(command, command)
        if not name:
            raise CommandUnavailable(command, "disabled on this server (REDIS_RENAMED_COMMANDS)")
        return name

    async def call(self, command: str, *args: Any) -> Any:
        """Run ``command`` (by its server name) and return the raw reply.

        redis-py chooses a reply parser by the first word, whatever the name; its COMMAND parser
        fails on the nil a renamed command gets, so the reply is read straight off a connection.
        """
        name = self.name(command)
        with redis_errors(self.url):
            pool = self.plain().connection_pool
            conn = await pool.get_connection()
            try:
                await conn.send_command(name, *args)
                return await conn.read_response()
            except rexc.ResponseError as exc:
                text = str(exc)
                if text.startswith("unknown command") or text.startswith("ERR unknown command"):
                    hint = " (renamed? set REDIS_RENAMED_COMMANDS)" if name == command.upper() else ""
                    raise CommandUnavailable(command, f"the server does not know {name!r}{hint}") from None
                if text.startswith("NOPERM") or isinstance(exc, rexc.NoPermissionError):
                    raise CommandUnavailable(command, f"denied by ACL ({text.strip()})") from None
                raise
            finally:
                await pool.release(conn)

    async def info(self, section: str | None = None) -> dict[str, Any]:
        with redis_errors(self.url):
            client = self.plain()
            return await (client.info(section) if section else client.info())

    async def config_get(self, pattern: str) -> dict[str, str]:
        reply = await self.call("CONFIG", "GET", pattern)
        if isinstance(reply, dict):  # RESP3, or redis-py's own callback
            return {as_text(k): as_text(v) for k, v in reply.items()}
        items = [as_text(v) for v in reply]
        return dict(zip(items[::2], items[1::2], strict=True))

    async def config_set(self, name: str, value: str) -> None:
        await self.call("CONFIG", "SET", name, value)

    def where(self) -> str:
        return redact(self.url)
