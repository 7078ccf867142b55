"""INFO sections, the slow log and latency, read safely (renamed or denied commands degrade)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from smarttrade.ops.server import Admin, CommandUnavailable, as_text
from smarttrade.redis.connections import redis_errors

SECTIONS = ("server", "clients", "memory", "stats", "persistence", "replication")


async def info_section(admin: Admin, section: str) -> dict[str, Any]:
    if section not in SECTIONS:
        raise ValueError(f"unknown section {section!r} (one of {', '.join(SECTIONS)})")
    return await admin.info(section)


@dataclass(frozen=True, slots=True)
class SlowEntry:
    id: int
    at: int  # unix seconds
    micros: int
    command: str
    client: str


async def slowlog(admin: Admin, count: int) -> tuple[list[SlowEntry], int]:
    """The newest ``count`` slow-log entries, and the log's length."""
    raw = await admin.call("SLOWLOG", "GET", count)
    length = int(await admin.call("SLOWLOG", "LEN"))
    entries = []
    for item in raw:
        args = [as_text(a) for a in item[3]]
        client = as_text(item[4]) if len(item) > 4 else ""
        if len(item) > 5 and item[5]:
            client += f" ({as_text(item[5])})"
        entries.append(SlowEntry(int(item[0]), int(item[1]), int(item[2]), " ".join(args)[:200], client))
    return entries, length


@dataclass
class Latency:
    samples: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    latest: list[tuple[str, int, int, int]] = field(default_factory=list)  # event, at, latest ms, max ms
    doctor: str = ""
    unavailable: str = ""  # why LATENCY could not be read


def percentile(sorted_ms: list[float], q: float) -> float:
    if not sorted_ms:
        return 0.0
    index = min(len(sorted_ms) - 1, max(0, round(q * (len(sorted_ms) - 1))))
    return sorted_ms[index]


async def latency(admin: Admin, count: int) -> Latency:
    """Client round trips (PING, like redis-cli --latency), then LATENCY LATEST and DOCTOR."""
    rtts = []
    with redis_errors(admin.url):
        for _ in range(count):
            started = time.perf_counter()
            await admin.client.ping()
            rtts.append((time.perf_counter() - started) * 1000)
    rtts.sort()
    p50, p90, p99 = (percentile(rtts, q) for q in (0.5, 0.9, 0.99))
    result = Latency(len(rtts), p50, p90, p99, rtts[-1] if rtts else 0.0)
    try:
        for item in await admin.call("LATENCY", "LATEST"):
            result.latest.append((as_text(item[0]), int(item[1]), int(item[2]), int(item[3])))
        result.doctor = as_text(await admin.call("LATENCY", "DOCTOR"))
    except CommandUnavailable as exc:
        result.unavailable = str(exc)
    return result
