"""Order flow (db 1): times & trades in per-second buckets, appended atomically."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from smarttrade.errors import ValidationError
from smarttrade.keyspace import SPECS, Store, orderflow_key
from smarttrade.models import OrderFlowBucket, Trade, encode
from smarttrade.redis.scripts import ORDERFLOW_APPEND
from smarttrade.stores.base import BaseStore
from smarttrade.symbols import check_symbol, spec_for

MAX_RANGE_S = 86_400


class OrderFlowStore(BaseStore):
    spec = SPECS[Store.ORDERFLOW]

    async def append(self, symbol: str, trades: Sequence[Trade]) -> int:
        """Append trades to their seconds' buckets in one atomic step; returns buckets touched."""
        decimals = spec_for(symbol).qty_decimals
        by_second: dict[int, list[bytes]] = defaultdict(list)
        for i, trade in enumerate(trades):
            trade = self.checked(trade, f"trades[{i}]")
            self.whole_units(trade.volume, decimals, f"trades[{i}].volume")
            by_second[int(trade.time)].append(encode(trade))
        if not by_second:
            return 0
        keys, args = [], [self.ttl]
        symbol_json = encode(symbol)
        for second, items in sorted(by_second.items()):
            keys.append(orderflow_key(symbol, second))
            args += [symbol_json, b",".join(items)]
        return int(await self.run_script(ORDERFLOW_APPEND, keys, args))

    def _read(self, raw: bytes, key: str, symbol: str) -> OrderFlowBucket:
        return self.decode_filled(OrderFlowBucket, raw, key, symbol=symbol)

    async def second(self, symbol: str, epoch_s: int) -> OrderFlowBucket | None:
        key = orderflow_key(check_symbol(symbol), epoch_s)
        raw = await self.get_raw(key)
        return None if raw is None else self._read(raw, key, symbol)

    async def range(self, symbol: str, start: int, end: int) -> list[tuple[int, OrderFlowBucket]]:
        """Buckets for every second in [start, end], oldest first, as (second, bucket)."""
        check_symbol(symbol)
        if end < start:
            raise ValidationError("end", f"must not be before start ({end} < {start})")
        if end - start > MAX_RANGE_S:
            raise ValidationError("end", f"range is limited to {MAX_RANGE_S} s")
        seconds = list(range(int(start), int(end) + 1))
        keys = [orderflow_key(symbol, s) for s in seconds]
        raws = await self.mget_raw(keys)
        return [
            (s, self._read(raw, key, symbol))
            for s, key, raw in zip(seconds, keys, raws, strict=True)
            if raw is not None
        ]
