"""The six stores of the wire contract, built over one shared mechanism (stores/base.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from smarttrade.keyspace import LAST_QUOTE_PREFIX, Store, current_layout, parse_key
from smarttrade.models import to_builtins
from smarttrade.redis.topology import Topology
from smarttrade.settings import Settings
from smarttrade.stores.base import BaseStore
from smarttrade.stores.calc import CalcStore
from smarttrade.stores.configs import ConfigStore
from smarttrade.stores.footprint import FootprintStore
from smarttrade.stores.orderflow import OrderFlowStore
from smarttrade.stores.quotes import QuoteStore
from smarttrade.stores.sessions import SessionStore


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    store: Store
    db: int
    ttl: int  # seconds; -1 no TTL, -2 missing
    value: Any  # decoded JSON (builtins), or None when missing


class Stores:
    def __init__(self, topology: Topology, settings: Settings) -> None:
        self.topology = topology
        self.quotes = QuoteStore(topology, settings)
        self.orderflow = OrderFlowStore(topology, settings)
        self.footprint = FootprintStore(topology, settings)
        self.calc = CalcStore(topology, settings)
        self.sessions = SessionStore(topology, settings)
        self.configs = ConfigStore(topology, settings)

    def by_store(self) -> dict[Store, BaseStore]:
        return {
            Store.QUOTES: self.quotes,
            Store.ORDERFLOW: self.orderflow,
            Store.FOOTPRINT: self.footprint,
            Store.CALC: self.calc,
            Store.SESSIONS: self.sessions,
            Store.CONFIG: self.configs,
        }

    async def read_key(self, key: str) -> KeyValue:
        """Read one contract key through the store its prefix names (ValueError on a bad key)."""
        if key.startswith(f"{LAST_QUOTE_PREFIX}:"):  # the latest-quote index, beside the quotes
            symbol = current_layout().untag(key.partition(":")[2])  # lastquote:{DOL} on a cluster
            latest = await self.quotes.latest(symbol)
            ttl = await self.quotes.ttl_of(key)
            return KeyValue(key, Store.QUOTES, self.quotes.db, ttl, to_builtins(latest))
        parsed = parse_key(key)
        store = self.by_store()[parsed.spec.store]
        p = parsed.parts
        match parsed.spec.store:
            case Store.QUOTES:
                value: Any = await self.quotes.get(p[0], int(p[1]))
            case Store.ORDERFLOW:
                value = await self.orderflow.second(p[0], int(p[1]))
            case Store.FOOTPRINT:
                value = await self.footprint.level(p[0], int(p[1]))
            case Store.CALC:
                value = await self.calc.get(p[0], p[1])
            case Store.SESSIONS:
                value = await self.sessions.get(p[0])
            case Store.CONFIG:
                value = await self.configs.get(p[0], p[1])
        ttl = await store.ttl_of(key)
        return KeyValue(key, parsed.spec.store, store.db, ttl, to_builtins(value))


__all__ = [
    "CalcStore",
    "ConfigStore",
    "FootprintStore",
    "KeyValue",
    "OrderFlowStore",
    "QuoteStore",
    "SessionStore",
    "Stores",
]
