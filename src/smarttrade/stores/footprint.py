"""Footprint (db 2): rolling volume at price per level, updated by an atomic Lua script."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping

import msgspec

from smarttrade.errors import UnknownSymbol, ValidationError
from smarttrade.keyspace import SPECS, Store, footprint_key, glob_escape, owner_prefix
from smarttrade.models import FootprintLevel, Trade
from smarttrade.redis.scripts import FOOTPRINT_APPLY
from smarttrade.stores.base import BaseStore
from smarttrade.symbols import check_symbol, spec_for

Delta = tuple[int | float, int | float]  # (buy, sell)
_LEVEL_RE = re.compile(r"-?[0-9]+")


class FootprintStore(BaseStore):
    spec = SPECS[Store.FOOTPRINT]

    async def apply(self, symbol: str, deltas: Mapping[int, Delta]) -> int:
        """Add (buy, sell) volume to each level at once; the TTL is refreshed on every update."""
        sym = spec_for(symbol)
        if not deltas:
            return 0
        keys, args = [], [self.ttl, sym.qty_decimals]
        for level, (buy, sell) in sorted(deltas.items()):
            if type(level) is not int or level <= 0:
                raise ValidationError("level", f"{level!r} is not a positive integer level")
            self.whole_units(buy, sym.qty_decimals, f"buy volume at {level}")
            self.whole_units(sell, sym.qty_decimals, f"sell volume at {level}")
            keys.append(footprint_key(symbol, level))
            args += [sym.price_text(level), repr(buy), repr(sell)]
        return int(await self.run_script(FOOTPRINT_APPLY, keys, args))

    async def add_trades(self, symbol: str, trades: Iterable[Trade]) -> int:
        sym = spec_for(symbol)
        deltas: dict[int, list[int | float]] = defaultdict(lambda: [0, 0])
        for i, trade in enumerate(trades):
            trade = self.checked(trade, f"trades[{i}]")
            deltas[sym.level(trade.price)][0 if trade.side == "buy" else 1] += trade.volume
        return await self.apply(symbol, {lv: (b, s) for lv, (b, s) in deltas.items()})

    def _read(self, raw: bytes, key: str, symbol: str, level: int) -> FootprintLevel:
        fp = self.decode(FootprintLevel, raw, key)
        total = fp.total_volume if fp.total_volume is not None else fp.buy_volume + fp.sell_volume
        imbalance = fp.imbalance
        if imbalance is None:
            imbalance = round(fp.buy_volume / total, 6) if total else 0.0
        price = fp.price
        if price is None:
            try:
                price = spec_for(symbol).price(level)
            except UnknownSymbol:
                price = None  # unknown symbol: the level stays the only price we know
        return msgspec.structs.replace(fp, price=price, total_volume=total, imbalance=imbalance)

    async def level(self, symbol: str, level: int) -> FootprintLevel | None:
        key = footprint_key(check_symbol(symbol), level)
        raw = await self.get_raw(key)
        return None if raw is None else self._read(raw, key, symbol, level)

    async def at_price(self, symbol: str, price: float) -> FootprintLevel | None:
        return await self.level(symbol, spec_for(symbol).level(price))

    async def ladder(self, symbol: str) -> list[tuple[int, FootprintLevel]]:
        """Every live level of a symbol, highest price first, as (level, values)."""
        prefix = owner_prefix(Store.FOOTPRINT, check_symbol(symbol))
        keys = await self.scan_keys(glob_escape(prefix) + "*")
        levels: list[tuple[int, str]] = []
        for key in keys:
            tail = key[len(prefix) :]
            if _LEVEL_RE.fullmatch(tail):  # skip hand-made keys that are not levels
                levels.append((int(tail), key))
        levels.sort(reverse=True)
        raws = await self.mget_raw([key for _, key in levels])
        return [
            (lv, self._read(raw, key, symbol, lv))
            for (lv, key), raw in zip(levels, raws, strict=True)
            if raw is not None
        ]
