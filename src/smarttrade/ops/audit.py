"""``smarttrade audit``: the server's security and durability posture, each finding with a fix.

Checks that need CONFIG or ACL fall back to what a plain client can observe (a connection without
credentials, COMMAND INFO) and say so when they cannot decide.
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass
from enum import IntEnum
from urllib.parse import urlsplit

from smarttrade.errors import SmartTradeError
from smarttrade.ops.server import Admin, CommandUnavailable, as_text


class Severity(IntEnum):
    OK = 0
    INFO = 1
    WARNING = 2
    CRITICAL = 3

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    severity: Severity
    detail: str
    fix: str = ""

    def as_json(self) -> dict[str, str]:
        return {"check": self.check, "severity": self.severity.label, "detail": self.detail, "fix": self.fix}


def _loopback(address: str) -> bool:
    address = address.lstrip("-")  # "-::1": bind if the address exists
    if address in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


async def _anonymous_ping(url: str) -> bool | None:
    """Does the server answer a client that gives no credentials? None: cannot tell."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return None
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(parts.hostname, parts.port or 6379), timeout=2
        )
    except (OSError, TimeoutError):
        return None
    try:
        if parts.scheme == "rediss":
            return None  # TLS: a plain-text probe proves nothing
        writer.write(b"PING\r\n")
        await writer.drain()
        reply = await asyncio.wait_for(reader.readline(), timeout=2)
        return reply.startswith(b"+PONG")
    except (OSError, TimeoutError):
        return None
    finally:
        writer.close()


async def _config(admin: Admin, name: str) -> str | None:
    try:
        return (await admin.config_get(name)).get(name)
    except CommandUnavailable:
        return None


_DRYRUN_ARGS = {"CONFIG": ["GET", "x"], "KEYS": ["x"], "DEBUG": ["HELP"]}  # DRYRUN checks arity


async def _can_run(admin: Admin, command: str) -> tuple[bool | None, str]:
    """(reachable?, how we know) for the app's user; None when it cannot be decided."""
    try:
        info = await admin.call("COMMAND", "INFO", command.lower())
    except CommandUnavailable as exc:
        return None, f"cannot list commands: {exc.reason}"
    # redis-py parses COMMAND replies into a dict by name; a renamed command answers nil.
    found = bool(info.get(command.lower())) if isinstance(info, dict) else bool(info and info[0])
    if not found:
        return False, "renamed or disabled"
    try:
        user = await admin.call("ACL", "WHOAMI")
        user = as_text(user)
        args = _DRYRUN_ARGS.get(command, [])
        reply = await admin.call("ACL", "DRYRUN", user, command.lower(), *args)
        return as_text(reply) == "OK", f"ACL DRYRUN for user {user}"
    except CommandUnavailable:
        return None, "exists; ACL DRYRUN (Redis 7) not available to check the user's rights"
    except SmartTradeError as exc:
        return None, f"exists; ACL DRYRUN failed: {exc}"


async def audit(admin: Admin) -> list[Finding]:
    findings: list[Finding] = []
    anonymous = await _anonymous_ping(admin.url)
    bind = await _config(admin, "bind")
    protected = await _config(admin, "protected-mode")
    # No bind at all (CONFIG GET answers "") means every interface.
    exposed = None if bind is None else not bind.split() or not all(_loopback(a) for a in bind.split())

    if bind is None:
        note = "cannot read bind (CONFIG not available)"
        findings.append(Finding("bind", Severity.INFO, note, "run audit as the operator user"))
    elif exposed:
        sev = Severity.CRITICAL if anonymous else Severity.WARNING
        findings.append(
            Finding(
                "bind",
                sev,
                f"listening beyond loopback: bind {bind or '(none: every interface)'}",
                "bind 127.0.0.1 -::1, or keep ACL passwords on and a firewall in front",
            )
        )
    else:
        findings.append(Finding("bind", Severity.OK, f"loopback only: bind {bind}"))

    if protected is not None:
        if protected == "no":
            sev = Severity.CRITICAL if exposed and anonymous else Severity.WARNING
            findings.append(Finding("protected-mode", sev, "protected mode is off", "protected-mode yes"))
        else:
            findings.append(Finding("protected-mode", Severity.OK, "protected mode is on"))

    if anonymous is None:
        findings.append(Finding("default user", Severity.INFO, "could not probe an anonymous connection"))
    elif anonymous:
        sev = Severity.CRITICAL if exposed else Severity.WARNING
        findings.append(
            Finding(
                "default user",
                sev,
                "a client with no password is served (default user on, nopass)",
                "`smarttrade profile render` (ACL users, default off) or requirepass",
            )
        )
    else:
        findings.append(Finding("default user", Severity.OK, "clients must authenticate"))

    reachable = []
    undecided = []
    for command in ("FLUSHALL", "FLUSHDB", "KEYS", "CONFIG", "DEBUG", "SHUTDOWN"):
        can, how = await _can_run(admin, command)
        if can:
            reachable.append(command)
        elif can is None:
            undecided.append(f"{command} ({how})")
    if reachable:
        findings.append(
            Finding(
                "dangerous commands",
                Severity.WARNING,
                f"the app's user can run {', '.join(reachable)}",
                "give the app the ingest/gateway ACL users from `smarttrade profile render`, "
                "or rename them (rename-command) and set REDIS_RENAMED_COMMANDS",
            )
        )
    elif undecided:
        findings.append(Finding("dangerous commands", Severity.INFO, "present: " + "; ".join(undecided)))
    else:
        findings.append(Finding("dangerous commands", Severity.OK, "none reachable by this user"))

    tls_port = await _config(admin, "tls-port")
    if urlsplit(admin.url).scheme == "rediss":
        findings.append(Finding("tls", Severity.OK, "connected over TLS"))
    elif tls_port not in (None, "0"):
        note = f"TLS on port {tls_port}, but this client uses plain text"
        findings.append(Finding("tls", Severity.INFO, note, "use rediss://"))
    else:
        sev = Severity.WARNING if exposed else Severity.INFO
        findings.append(
            Finding("tls", sev, "no TLS", "tls-port with certificates when clients are not local")
        )

    info = await admin.info()
    aof = int(info.get("aof_enabled", 0))
    save = await _config(admin, "save")
    rdb_on = bool(save and save.strip()) if save is not None else None
    if aof:
        findings.append(Finding("persistence", Severity.OK, "AOF on: user settings survive a restart"))
    elif rdb_on:
        note = f"RDB snapshots only ({save}): recent setting changes can be lost"
        findings.append(Finding("persistence", Severity.INFO, note, "appendonly yes"))
    elif rdb_on is False:
        findings.append(
            Finding(
                "persistence",
                Severity.CRITICAL,
                "no AOF and no RDB snapshots: user settings (permanent) are lost on restart",
                "appendonly yes (`smarttrade profile apply`)",
            )
        )
    else:
        findings.append(
            Finding("persistence", Severity.INFO, "AOF off; RDB schedule unknown (CONFIG not available)")
        )

    policy = str(info.get("maxmemory_policy", "?"))
    if policy.startswith("allkeys"):
        findings.append(
            Finding(
                "eviction",
                Severity.CRITICAL,
                f"maxmemory-policy {policy} can evict permanent user settings",
                "maxmemory-policy volatile-lru (only keys with a TTL are evicted)",
            )
        )
    elif policy == "noeviction":
        note = "noeviction: a full Redis refuses writes and ingest stalls"
        findings.append(Finding("eviction", Severity.WARNING, note, "volatile-lru"))
    else:
        findings.append(Finding("eviction", Severity.OK, f"{policy}: only keys with a TTL can be evicted"))
    return findings
