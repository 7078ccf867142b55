"""The trading profile of DESIGN.md §3: one dict that the embedded server, render and check share.

Deviation from the seed on purpose: ``volatile-lru`` instead of ``allkeys-lru``, so permanent user
settings are never evicted under memory pressure; only keys with a TTL are.
"""

from __future__ import annotations

TRADING_PROFILE: dict[str, str] = {
    "maxmemory": "512mb",
    "maxmemory-policy": "volatile-lru",
    "notify-keyspace-events": "Ex",
    "tcp-keepalive": "300",
    "timeout": "0",
    # LATENCY LATEST/DOCTOR record events slower than this many ms (0, the default, records none).
    "latency-monitor-threshold": "50",
    # Persistence, for the user-settings store: AOF every second plus RDB snapshots.
    "appendonly": "yes",
    "appendfsync": "everysec",
    "save": "900 1 300 10 60 10000",
}
