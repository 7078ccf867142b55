"""The runbook's alert thresholds, each with a warning and a critical level (docs/operations.md).

``evaluate`` is pure: it takes two samples of the server, what the previous check saw and the age
of the last backup, and returns one ``Check`` per rule. The CLI, ``monitor`` and the exporter call
it with what they have, so a threshold means the same thing everywhere.

On a cluster the sample is the primaries' sum (ops/sample.py). Memory and connections are limits
of each server (its maxmemory, its maxclients), so those two are judged on the node nearest its
limit and name it; ops/s, hit rate and evictions are judged on the sum.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from smarttrade.ops.sample import Rates, Sample
from smarttrade.settings import Settings, memory_bytes

MIN_LOOKUPS = 100  # a hit rate over fewer lookups says nothing
CHECKS = ("memory", "connections", "hit_rate", "ops", "evictions", "backup")


class Level(IntEnum):
    OK = 0
    WARNING = 1
    CRITICAL = 2

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    level: Level
    value: str  # what was measured, for humans
    message: str  # what it means and what to do

    def as_json(self) -> dict[str, object]:
        return {"check": self.name, "level": self.level.label, "value": self.value, "message": self.message}


@dataclass(frozen=True, slots=True)
class Previous:
    """Counters the previous check saw (same server run), to judge what happened since."""

    run_id: str
    hits: int
    misses: int
    evicted: int


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def memory_limit(level: str, maxmemory: int) -> int | None:
    """A memory level in bytes; a percentage of maxmemory is None when there is no maxmemory."""
    if level.endswith("%"):
        return maxmemory * int(level[:-1]) // 100 if maxmemory else None
    return memory_bytes(level)


def _grade(value: float, warn: float | None, crit: float | None, above: bool = True) -> Level:
    def past(limit: float | None) -> bool:
        return limit is not None and (value > limit if above else value < limit)

    return Level.CRITICAL if past(crit) else Level.WARNING if past(warn) else Level.OK


def _on(node: Sample, whole: Sample) -> str:
    """`` on host:port`` when the sample is one node of several."""
    return f" on {node.node}" if whole.nodes else ""


def _memory_of(s: Settings, node: Sample) -> tuple[Level, float, int | None, int | None]:
    warn = memory_limit(s.smarttrade_alert_memory_warn, node.maxmemory)
    crit = memory_limit(s.smarttrade_alert_memory_crit, node.maxmemory)
    return _grade(node.used_memory, warn, crit), node.memory_share or 0.0, warn, crit


def _memory(s: Settings, whole: Sample) -> Check:
    # the fullest node: highest level, then the largest share of its own maxmemory
    cur = max(whole.members, key=lambda n: (_memory_of(s, n)[:2], n.used_memory))
    level, _share, warn, crit = _memory_of(s, cur)
    of_max = f" of {_mib(cur.maxmemory)} maxmemory" if cur.maxmemory else " (no maxmemory set)"
    value = f"{_mib(cur.used_memory)}{of_max}{_on(cur, whole)}"
    limits = ", ".join(f"{n} {_mib(v)}" for n, v in (("warn", warn), ("crit", crit)) if v is not None)
    message = f"used memory within limits ({limits})" if limits else "no level applies: maxmemory is unset"
    if level:
        message = (
            f"used memory above the {level.label} level ({limits}): clear old cache with "
            "`smarttrade cleanup --apply`, check TTLs with `smarttrade ttl STORE`, or raise maxmemory"
        )
    return Check("memory", level, value, message)


def _connections(s: Settings, whole: Sample) -> Check:
    warn, crit = s.smarttrade_alert_clients_warn, s.smarttrade_alert_clients_crit
    cur = max(whole.members, key=lambda n: n.clients)  # maxclients is per server
    level = _grade(cur.clients, warn, crit)
    message = f"{cur.clients} clients{_on(cur, whole)} (warn > {warn}, crit > {crit})"
    if level:
        message += (
            ": look for a connection leak with `smarttrade info clients`; each process keeps a bounded pool"
        )
    return Check("connections", level, str(cur.clients), message)


def _hit_rate(s: Settings, cur: Sample, prev: Previous | None) -> Check:
    if prev and prev.run_id == cur.run_id and cur.hits >= prev.hits and cur.misses >= prev.misses:
        hits, misses, since = cur.hits - prev.hits, cur.misses - prev.misses, "since the last check"
    else:
        hits, misses, since = cur.hits, cur.misses, "since the server started"
    total = hits + misses
    if total < MIN_LOOKUPS:
        return Check(
            "hit_rate", Level.OK, "n/a", f"only {total} lookups {since}; at least {MIN_LOOKUPS} needed"
        )
    rate = hits / total
    warn, crit = s.smarttrade_alert_hit_rate_warn, s.smarttrade_alert_hit_rate_crit
    level = _grade(rate, warn, crit, above=False)
    message = f"{rate:.1%} of {total:,} lookups {since} (warn < {warn:.0%}, crit < {crit:.0%})"
    if level:
        message += ": readers ask for keys that expired or were never written; review the TTLs"
    return Check("hit_rate", level, f"{rate:.1%}", message)


def _ops(s: Settings, rates: Rates | None, cur: Sample) -> Check:
    """Commands clients send (an EVALSHA once, not the dozens of writes it runs: ops/sample.py)."""
    ops = rates.ops_s if rates else float(cur.ops_per_sec)
    warn, crit = s.smarttrade_alert_ops_warn, s.smarttrade_alert_ops_crit
    level = _grade(ops, warn, crit)
    measured = (
        f"{ops:,.0f} client commands/s ({rates.commands_s:,.0f}/s with what scripts ran)"
        if rates
        else f"{ops:,.0f} commands/s (the server's instantaneous figure, scripts' commands included)"
    )
    message = f"{measured} (warn > {warn:,}, crit > {crit:,})"
    if level:
        message += ": watch latency (`smarttrade latency`) and the slow log (`smarttrade slowlog`)"
    return Check("ops", level, f"{ops:,.0f}/s", message)


def _evictions(rates: Rates | None, cur: Sample, prev: Previous | None) -> Check:
    if rates and rates.evicted:
        return Check(
            "evictions",
            Level.CRITICAL,
            f"{rates.evicted_s:,.1f}/s",
            f"evicting now ({rates.evicted:,} keys in {rates.seconds:.1f} s): memory is full; "
            "raise maxmemory or shorten TTLs",
        )
    if prev and prev.run_id == cur.run_id and cur.evicted >= prev.evicted:
        since, count = "since the last check", cur.evicted - prev.evicted
    else:
        since, count = "since the server started", cur.evicted
    if count:
        return Check(
            "evictions",
            Level.WARNING,
            f"{count:,}",
            f"{count:,} keys evicted {since} (policy {cur.maxmemory_policy}): market data was dropped "
            "before its TTL; raise maxmemory",
        )
    return Check("evictions", Level.OK, "0", f"no keys evicted {since}")


def _backup(s: Settings, age_s: float | None) -> Check:
    warn_h, crit_h = s.smarttrade_alert_backup_warn_hours, s.smarttrade_alert_backup_crit_hours
    if age_s is None:
        return Check("backup", Level.WARNING, "none", f"no backup in {s.backup_dir}: run `smarttrade backup`")
    hours = age_s / 3600
    level = _grade(hours, warn_h, crit_h)
    message = f"last backup {hours:.1f} h ago (warn > {warn_h:g} h, crit > {crit_h:g} h)"
    if level:
        message += ": run `smarttrade backup` and check the backup timer (docs/operations.md)"
    return Check("backup", level, f"{hours:.1f} h", message)


def evaluate(
    settings: Settings,
    cur: Sample,
    rates: Rates | None,
    prev: Previous | None,
    backup_age_s: float | None,
) -> list[Check]:
    return [
        _memory(settings, cur),
        _connections(settings, cur),
        _hit_rate(settings, cur, prev),
        _ops(settings, rates, cur),
        _evictions(rates, cur, prev),
        _backup(settings, backup_age_s),
    ]


def worst(checks: list[Check]) -> Level:
    return max((c.level for c in checks), default=Level.OK)
