"""Prometheus metrics: redis_exporter's names where they overlap, ``smarttrade_*`` for ours.

One collector renders an ``Observation`` (ops/watch.py); the server's own figures carry a ``node``
label (every primary of a cluster, the one server otherwise). ``smarttrade exporter`` serves it with
prometheus-client's HTTP server, reading Redis on each scrape; the gateway can mount the same
collector at ``/metrics``. Rules and the dashboard over these names: deploy/prometheus, deploy/grafana.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from smarttrade.ops.sample import Sample
from smarttrade.ops.watch import Observation, Watcher

Fetch = Callable[[], Observation]

# name -> (type, help)
METRICS: dict[str, tuple[str, str]] = {
    "redis_up": ("gauge", "1 when the last reading of Redis succeeded"),
    "redis_uptime_in_seconds": ("gauge", "Seconds since the server started"),
    "redis_memory_used_bytes": ("gauge", "used_memory from INFO memory"),
    "redis_memory_max_bytes": ("gauge", "maxmemory (0: no limit)"),
    "redis_mem_fragmentation_ratio": ("gauge", "RSS / used_memory"),
    "redis_allocator_frag_ratio": ("gauge", "jemalloc fragmentation (what active defrag can fix)"),
    "redis_connected_clients": ("gauge", "Client connections"),
    "redis_blocked_clients": ("gauge", "Clients blocked in a blocking call"),
    "redis_keyspace_hits_total": ("counter", "Successful key lookups"),
    "redis_keyspace_misses_total": ("counter", "Failed key lookups"),
    "redis_commands_processed_total": ("counter", "Commands processed (what Lua scripts ran included)"),
    "redis_evicted_keys_total": ("counter", "Keys evicted for maxmemory"),
    "redis_expired_keys_total": ("counter", "Keys expired by TTL"),
    "redis_instantaneous_ops_per_sec": ("gauge", "The server's own ops/s figure"),
    "redis_db_keys": ("gauge", "Keys per database"),
    "redis_db_keys_expiring": ("gauge", "Keys with a TTL per database"),
    "redis_rdb_last_save_timestamp_seconds": ("gauge", "Unix time of the last successful RDB save"),
    "redis_rdb_changes_since_last_save": ("gauge", "Writes since the last RDB save"),
    "redis_rdb_last_bgsave_status": ("gauge", "1 when the last BGSAVE succeeded"),
    "smarttrade_script_commands_total": (
        "counter",
        "Commands our ingest scripts ran inside Redis (part of redis_commands_processed_total); "
        "the difference of the two rates is what clients send",
    ),
    "smarttrade_store_hits_total": ("counter", "Reads that found their key, per store (from our processes)"),
    "smarttrade_store_misses_total": ("counter", "Reads that found nothing, per store"),
    "smarttrade_store_hit_ratio": ("gauge", "hits / (hits + misses) per store, since the counters began"),
    "smarttrade_ingest_lag_seconds": ("gauge", "Oldest trade of the last commit: accepted -> acknowledged"),
    "smarttrade_ingest_batch_size": ("gauge", "Trades in the last commit round"),
    "smarttrade_ingest_max_batch_size": ("gauge", "Largest commit round of the run"),
    "smarttrade_ingest_trades_total": ("counter", "Trades committed by the running ingester"),
    "smarttrade_ingest_commits_total": ("counter", "Commit scripts applied by the running ingester"),
    "smarttrade_alert_state": ("gauge", "0 ok, 1 warning, 2 critical, per check"),
    "smarttrade_alerts_fired_total": ("counter", "Times a check rose to a level since the exporter started"),
    "smarttrade_last_backup_timestamp_seconds": ("gauge", "Unix time of the newest backup (0: none found)"),
    "smarttrade_scrape_duration_seconds": ("gauge", "Time the last reading took"),
}
METRIC_NAMES = frozenset(METRICS)

# One series per server read (every primary of a cluster), labelled node="host:port": what is a
# limit of one server (memory against its maxmemory) must be seen per server; sum() adds them up.
PER_NODE: dict[str, Callable[[Sample], float]] = {
    "redis_uptime_in_seconds": lambda s: s.uptime_s,
    "redis_memory_used_bytes": lambda s: s.used_memory,
    "redis_memory_max_bytes": lambda s: s.maxmemory,
    "redis_mem_fragmentation_ratio": lambda s: s.frag_ratio,
    "redis_allocator_frag_ratio": lambda s: s.allocator_frag_ratio,
    "redis_connected_clients": lambda s: s.clients,
    "redis_blocked_clients": lambda s: s.blocked_clients,
    "redis_keyspace_hits_total": lambda s: s.hits,
    "redis_keyspace_misses_total": lambda s: s.misses,
    "redis_commands_processed_total": lambda s: s.commands,
    "redis_evicted_keys_total": lambda s: s.evicted,
    "redis_expired_keys_total": lambda s: s.expired,
    "redis_instantaneous_ops_per_sec": lambda s: s.ops_per_sec,
    "redis_rdb_last_save_timestamp_seconds": lambda s: s.rdb_last_save,
    "redis_rdb_changes_since_last_save": lambda s: s.rdb_changes,
    "redis_rdb_last_bgsave_status": lambda s: 1 if s.rdb_bgsave_ok else 0,
    "smarttrade_script_commands_total": lambda s: s.script_calls,
}


def _family(name: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily | CounterMetricFamily:
    kind, doc = METRICS[name]
    if kind == "counter":  # prometheus-client appends _total itself
        return CounterMetricFamily(name.removesuffix("_total"), doc, labels=list(labels))
    return GaugeMetricFamily(name, doc, labels=list(labels))


def families(obs: Observation | None) -> Iterator[Metric]:
    up = _family("redis_up")
    up.add_metric([], 1 if obs else 0)
    yield up
    if obs is None:
        return
    took = _family("smarttrade_scrape_duration_seconds")
    took.add_metric([], obs.taken_s)
    yield took
    nodes = obs.sample.members
    for name, value_of in PER_NODE.items():
        fam = _family(name, ("node",))
        for s in nodes:
            fam.add_metric([s.node], value_of(s))
        yield fam
    keys = _family("redis_db_keys", ("node", "db"))
    expiring = _family("redis_db_keys_expiring", ("node", "db"))
    for s in nodes:
        for db, (n, e) in sorted(s.keyspace.items()):
            keys.add_metric([s.node, f"db{db}"], n)
            expiring.add_metric([s.node, f"db{db}"], e)
    yield keys
    yield expiring
    hits = _family("smarttrade_store_hits_total", ("store",))
    misses = _family("smarttrade_store_misses_total", ("store",))
    ratio = _family("smarttrade_store_hit_ratio", ("store",))
    for st in obs.stores:
        hits.add_metric([st.store.value], st.hits)
        misses.add_metric([st.store.value], st.misses)
        if st.ratio is not None:
            ratio.add_metric([st.store.value], st.ratio)
    yield from (hits, misses, ratio)
    per_source = {
        "smarttrade_ingest_lag_seconds": lambda f: f.lag_ms / 1000,
        "smarttrade_ingest_batch_size": lambda f: f.batch,
        "smarttrade_ingest_max_batch_size": lambda f: f.max_batch,
        "smarttrade_ingest_trades_total": lambda f: f.trades,
        "smarttrade_ingest_commits_total": lambda f: f.commits,
    }
    for name, value_of in per_source.items():
        fam = _family(name, ("source",))
        for figures in obs.ingesters:
            fam.add_metric([figures.source], value_of(figures))
        yield fam
    state = _family("smarttrade_alert_state", ("check",))
    for check in obs.checks:
        state.add_metric([check.name], int(check.level))
    yield state
    backup = _family("smarttrade_last_backup_timestamp_seconds")
    backup.add_metric([], time.time() - obs.backup_age_s if obs.backup_age_s is not None else 0)
    yield backup


class SmartTradeCollector(Collector):
    """Reads through ``fetch`` on each scrape; a failed reading is ``redis_up 0``, not an error."""

    def __init__(self, fetch: Fetch, watcher: Watcher) -> None:
        self.fetch = fetch
        self.watcher = watcher

    def collect(self) -> Iterator[Metric]:
        try:
            obs: Observation | None = self.fetch()
        except Exception:  # Redis down, timed out, denied: the scrape still answers
            obs = None
        yield from families(obs)
        fired = _family("smarttrade_alerts_fired_total", ("check", "level"))
        for (check, level), count in sorted(self.watcher.fired.items()):
            fired.add_metric([check, level], count)
        yield fired


def threadsafe_fetch(watcher: Watcher, loop: asyncio.AbstractEventLoop, timeout_s: float = 10.0) -> Fetch:
    """A fetch for a collector called from prometheus-client's HTTP thread: it runs the poll on
    the event loop that owns the Redis connections."""

    def fetch() -> Observation:
        future = asyncio.run_coroutine_threadsafe(watcher.poll(), loop)
        try:
            return future.result(timeout_s)
        except TimeoutError:
            future.cancel()  # a hung Redis must not queue every later scrape behind this one
            raise

    return fetch


__all__ = ["METRIC_NAMES", "SmartTradeCollector", "families", "threadsafe_fetch"]
