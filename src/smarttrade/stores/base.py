"""The mechanism every store shares: its client (from the topology) and TTL, reads, writes, scans, scripts.

Each concrete store is a thin class that says which key and which model; nothing below is
repeated per store.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any, ClassVar, TypeVar

import msgspec
from redis.commands.core import AsyncScript

from smarttrade.errors import ValidationError
from smarttrade.keyspace import StoreSpec
from smarttrade.models import decode, encode
from smarttrade.redis.connections import redis_errors
from smarttrade.redis.topology import Topology
from smarttrade.settings import Settings

T = TypeVar("T")
MGET_CHUNK = 500
SCAN_COUNT = 500


class BaseStore:
    spec: ClassVar[StoreSpec]

    def __init__(self, topology: Topology, settings: Settings) -> None:
        self.settings = settings
        self.db = topology.db(self.spec.store)
        self.ttl = settings.ttl(self.spec)
        self.redis = topology.client(self.spec.store)
        self.url = topology.url
        # Per-store hit counting: INFO only has a server-wide hit rate.
        self.hits = 0
        self.misses = 0
        self._scripts: dict[str, AsyncScript] = {}

    @contextmanager
    def guard(self, where: str | None = None) -> Iterator[None]:
        with redis_errors(self.url, where):
            yield

    def _count(self, found: bool) -> None:
        if found:
            self.hits += 1
        else:
            self.misses += 1

    async def get_raw(self, key: str) -> bytes | None:
        with self.guard(key):
            raw = await self.redis.get(key)
        self._count(raw is not None)
        return raw

    async def mget_raw(self, keys: Sequence[str]) -> list[bytes | None]:
        out: list[bytes | None] = []
        with self.guard():
            for i in range(0, len(keys), MGET_CHUNK):
                out.extend(await self.redis.mget(keys[i : i + MGET_CHUNK]))
        for raw in out:
            self._count(raw is not None)
        return out

    async def put_raw(self, key: str, data: bytes, ttl: int | None = None) -> None:
        """SET with the store's TTL (EX), or without one for permanent stores."""
        ttl = self.ttl if ttl is None else ttl
        with self.guard(key):
            if ttl is None:
                await self.redis.set(key, data)
            else:
                await self.redis.set(key, data, ex=ttl)

    async def delete(self, key: str) -> bool:
        with self.guard():
            return bool(await self.redis.unlink(key))

    async def ttl_of(self, key: str) -> int:
        with self.guard():
            return int(await self.redis.ttl(key))

    async def scan_keys(self, match: str) -> list[str]:
        """SCAN with a COUNT (never KEYS); keys are returned as text."""
        keys: list[str] = []
        with self.guard():
            async for key in self.redis.scan_iter(match=match, count=SCAN_COUNT):
                # a key that is not UTF-8 (written by hand) must not break the listing
                keys.append(key.decode(errors="surrogateescape") if isinstance(key, bytes) else key)
        return keys

    async def run_script(self, source: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = self.redis.register_script(source)
        with self.guard(f"{self.spec.title} write"):
            return await script(keys=list(keys), args=list(args))

    @staticmethod
    def decode(kind: type[T], raw: bytes, key: str) -> T:
        return decode(kind, raw, key)

    @staticmethod
    def decode_filled(kind: type[T], raw: bytes, key: str, **from_key: Any) -> T:
        """Decode, then fill the fields a hand-written value left out from what the key says."""
        value = decode(kind, raw, key)
        missing = {name: v for name, v in from_key.items() if getattr(value, name) is None and v is not None}
        return msgspec.structs.replace(value, **missing) if missing else value  # type: ignore[type-var]

    @staticmethod
    def whole_units(value: float, decimals: int, where: str) -> None:
        """A quantity must be finite, below 1e15 and exact in the symbol's quantity scale."""
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValidationError(where, f"{value!r} is not a finite number")
        if abs(value) >= 1e15:
            raise ValidationError(where, f"{value!r} is too large")
        units = Decimal(repr(value)).scaleb(decimals)
        if units != units.to_integral_value():
            what = "whole contracts" if decimals == 0 else f"at most {decimals} decimals"
            raise ValidationError(where, f"{value!r} is not a quantity here ({what})")

    @staticmethod
    def checked(value: T, where: str) -> T:
        """Validate a value we are about to write by the same rules as a read."""
        return decode(type(value), encode(value), where)
