"""``profile render | check | apply``: the trading profile (redis/profile.py) as a redis.conf
fragment with least-privilege ACL users, compared with and applied to a live server.

ACL rules use only Redis 6.2 syntax (no selectors), so one fragment serves 6.2 and 7.x. A role's
key patterns are the prefixes it touches (keyspace.FAMILIES); ``-@dangerous`` takes away KEYS,
FLUSHALL, CONFIG, DEBUG and friends, then each role gets back only what it uses.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from smarttrade.keyspace import (
    ALERT_CHANGES_CHANNEL,
    ALERT_CHANNEL,
    CHANNEL_PREFIX,
    FAMILIES,
    GATEWAY_PROBE_PREFIX,
    OPS_PREFIX,
    Store,
)
from smarttrade.ops.server import Admin, CommandUnavailable
from smarttrade.redis.profile import TRADING_PROFILE
from smarttrade.settings import Settings, memory_bytes

MARKET = (Store.QUOTES, Store.ORDERFLOW, Store.FOOTPRINT, Store.CALC)
# What redis-py sends when it connects (it ignores a refused CLIENT SETINFO).
CONNECT = "+ping +select +hello +client|setname +client|id"


def _keys(stores: tuple[Store, ...], extra: tuple[str, ...] = ()) -> str:
    prefixes = [f.prefix for f in FAMILIES if f.store in stores] + list(extra)
    return " ".join(f"~{p}:*" for p in dict.fromkeys(prefixes))


# role -> (what it is for, its ACL rules after "on #<sha256>")
ROLES: dict[str, tuple[str, str]] = {
    "ingest": (
        "the ingester: writes market data through Lua commits, publishes trades",
        f"resetkeys {_keys(MARKET, (OPS_PREFIX,))} resetchannels &{CHANNEL_PREFIX}:* "
        f"-@all +@read +@write +@scripting +@pubsub -@dangerous +info +time {CONNECT}",
    ),
    "gateway": (
        "the HTTP/WebSocket gateway: reads market data, keeps sessions and user settings",
        f"resetkeys {_keys((*MARKET, Store.SESSIONS, Store.CONFIG), (OPS_PREFIX,))} "
        # the trades, its /healthz canary, fired alerts, alert index changes, expired liveness keys
        f"resetchannels &{CHANNEL_PREFIX}:* &{GATEWAY_PROBE_PREFIX}:* &{ALERT_CHANNEL} "
        f"&{ALERT_CHANGES_CHANNEL} &__keyevent@*__:expired "
        f"-@all +@read +@write +@scripting +@pubsub +@transaction -@dangerous +info +time {CONNECT}",
    ),
    "operator": (
        "`smarttrade` ops commands: inspect, clean up, flush a store, back up, export/import",
        "resetkeys ~* resetchannels &* -@all +@read +@write +@keyspace +@scripting +@transaction "
        "-@dangerous +info +config|get +config|set +config|rewrite +slowlog +latency +memory +bgsave "
        "+lastsave +dbsize +flushdb +dump +restore +time +role +acl|whoami +acl|list +acl|getuser "
        f"+acl|dryrun +client|list +command {CONNECT}",
    ),
    "backup": (
        "the backup timer: BGSAVE, and where the RDB is (no key access, no CONFIG SET)",
        f"resetkeys resetchannels -@all +bgsave +lastsave +config|get +info +time {CONNECT}",
    ),
    "exporter": (
        "the Prometheus exporter and `smarttrade monitor`: INFO plus our published figures",
        # hset/expire only on ops:* (its keys): `alerts` keeps what it saw for the next check
        f"resetkeys ~{OPS_PREFIX}:* resetchannels -@all +info +scan +hgetall +hset +expire +time +dbsize "
        f"{CONNECT}",
    ),
}
DANGEROUS = ("FLUSHALL", "FLUSHDB", "KEYS", "CONFIG", "DEBUG", "SHUTDOWN", "MODULE", "ACL")


@dataclass(frozen=True, slots=True)
class Rendered:
    conf: str
    passwords: dict[str, str]
    renamed: dict[str, str]  # command -> new name, when asked to rename


def expected(settings: Settings) -> dict[str, str]:
    """The profile's settings, with this deployment's maxmemory."""
    return {**TRADING_PROFILE, "maxmemory": settings.smarttrade_maxmemory}


def render(
    settings: Settings,
    bind: str = "127.0.0.1 -::1",
    port: int = 6379,
    data_dir: str = "/var/lib/smarttrade/redis",
    passwords: dict[str, str] | None = None,
    rename_dangerous: bool = False,
) -> Rendered:
    passwords = dict(passwords or {})
    for role in ROLES:
        passwords.setdefault(role, secrets.token_urlsafe(24))
    lines = [
        "# Smart-Trade trading profile (DESIGN.md §3), written by `smarttrade profile render`.",
        "# Include it from redis.conf, or run redis-server with it; `smarttrade profile check` compares.",
        f"bind {bind}",
        "protected-mode yes",
        f"port {port}",
        f"dir {data_dir}",
    ]
    for name, value in expected(settings).items():
        if name == "save":
            points = value.split()
            lines += [f"save {points[i]} {points[i + 1]}" for i in range(0, len(points), 2)]
        else:
            lines.append(f"{name} {value}")
    lines += [
        "",
        "# ACL users, least privilege per role. The default user is off: every client logs in.",
        "# Passwords are stored as SHA-256; the clear ones are in the secrets file render wrote.",
        "user default off",
    ]
    for role, (purpose, rules) in ROLES.items():
        digest = hashlib.sha256(passwords[role].encode()).hexdigest()
        lines += [f"# {role}: {purpose}", f"user {role} on #{digest} {rules}"]
    renamed: dict[str, str] = {}
    if rename_dangerous:
        lines += ["", "# Dangerous commands renamed; give the names to smarttrade in REDIS_RENAMED_COMMANDS."]
        for command in ("FLUSHALL", "FLUSHDB", "KEYS", "CONFIG"):
            disabled = command in ("FLUSHALL", "KEYS")  # nothing of ours uses them
            renamed[command] = "" if disabled else f"{command.lower()}-{secrets.token_hex(6)}"
            lines.append(f'rename-command {command} "{renamed[command]}"')
    return Rendered("\n".join(lines) + "\n", passwords, renamed)


def secrets_env(rendered: Rendered, host: str, port: int) -> str:
    """The URL each role connects with, as env lines (keep this file private)."""
    lines = ["# Written by `smarttrade profile render`: one REDIS_URL per role. Keep it private (0600)."]
    for role, password in rendered.passwords.items():
        lines.append(f"REDIS_URL_{role.upper()}=redis://{role}:{password}@{host}:{port}")
    if rendered.renamed:
        pairs = ",".join(f"{k}={v}" for k, v in rendered.renamed.items())
        lines.append(f"REDIS_RENAMED_COMMANDS={pairs}")
    return "\n".join(lines) + "\n"


def role_env(rendered: Rendered, role: str, host: str, port: int) -> str:
    """One role's REDIS_URL (and renamed commands), for that role's systemd unit only."""
    lines = [f"# Written by `smarttrade profile render`: the {role} role's connection. Keep it private."]
    lines.append(f"REDIS_URL=redis://{role}:{rendered.passwords[role]}@{host}:{port}")
    if rendered.renamed:
        lines.append("REDIS_RENAMED_COMMANDS=" + ",".join(f"{k}={v}" for k, v in rendered.renamed.items()))
    return "\n".join(lines) + "\n"


# -- check and apply -----------------------------------------------------------------------------


def _normalize(name: str, value: str) -> str:
    value = value.strip()
    if name == "maxmemory":
        return str(memory_bytes(value.lower()))
    if name == "notify-keyspace-events":
        return "".join(sorted(set(value)))
    if name == "save":
        return " ".join(value.split())
    return value.lower()


@dataclass(frozen=True, slots=True)
class Difference:
    name: str
    want: str
    have: str | None  # None: could not be read
    settable: bool  # CONFIG SET can fix it at runtime

    @property
    def known(self) -> bool:
        return self.have is not None


# Readable from INFO when CONFIG GET is renamed away or denied.
_FROM_INFO = {"maxmemory": "maxmemory", "maxmemory-policy": "maxmemory_policy", "appendonly": "aof_enabled"}


async def live_config(admin: Admin, names: list[str]) -> tuple[dict[str, str], str]:
    """The server's values for ``names``, and why some could not be read ('' when all could)."""
    try:
        have: dict[str, str] = {}
        for name in names:
            have |= await admin.config_get(name)
        return have, ""
    except CommandUnavailable as exc:
        info = await admin.info()
        have = {}
        for name, field in _FROM_INFO.items():
            if name in names and field in info:
                value = str(info[field])
                have[name] = ("yes" if value == "1" else "no") if name == "appendonly" else value
        return have, str(exc)


async def check(admin: Admin, settings: Settings) -> tuple[list[Difference], list[tuple[str, str]], str]:
    """(differences, (name, value) that match, why some could not be read)."""
    want = expected(settings)
    have, why = await live_config(admin, list(want))
    diffs, same = [], []
    for name, value in want.items():
        got = have.get(name)
        if got is None:
            diffs.append(Difference(name, value, None, True))
        elif _normalize(name, got) != _normalize(name, value):
            diffs.append(Difference(name, value, got, True))
        else:
            same.append((name, got))
    return diffs, same, why


async def apply(admin: Admin, diffs: list[Difference]) -> list[tuple[str, str]]:
    """CONFIG SET each difference; returns (name, error) for the ones the server refused."""
    failed = []
    for diff in diffs:
        try:
            await admin.config_set(diff.name, diff.want)
        except CommandUnavailable:
            raise
        except Exception as exc:  # the server refused this one value; go on with the rest
            failed.append((diff.name, str(exc)))
    return failed


__all__ = ["DANGEROUS", "ROLES", "Difference", "apply", "check", "expected", "render", "secrets_env"]
