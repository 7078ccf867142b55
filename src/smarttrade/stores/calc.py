"""Calculations (db 3): the latest value of each indicator per symbol."""

from __future__ import annotations

import re
import time

from smarttrade.errors import ValidationError
from smarttrade.keyspace import SPECS, Store, calc_key, glob_escape, owner_prefix
from smarttrade.models import Calc, encode
from smarttrade.stores.base import BaseStore
from smarttrade.symbols import check_symbol

INDICATOR_RE = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")


def check_indicator(name: str) -> str:
    if not isinstance(name, str) or not INDICATOR_RE.match(name):
        raise ValidationError(
            "indicator", f"{name!r} is not an indicator name (a-z, 0-9, '_', '.'; 1-64 chars)"
        )
    return name


class CalcStore(BaseStore):
    spec = SPECS[Store.CALC]

    async def put(
        self,
        symbol: str,
        indicator: str,
        value: float,
        period: int | None = None,
        timestamp: float | None = None,
    ) -> Calc:
        check_symbol(symbol)
        check_indicator(indicator)
        calc = Calc(
            indicator=indicator,
            value=value,
            timestamp=time.time() if timestamp is None else timestamp,
            period=period,
        )
        calc = self.checked(calc, calc_key(symbol, indicator))
        await self.put_raw(calc_key(symbol, indicator), encode(calc))
        return calc

    def _read(self, raw: bytes, key: str, indicator: str) -> Calc:
        return self.decode_filled(Calc, raw, key, indicator=indicator)

    async def get(self, symbol: str, indicator: str) -> Calc | None:
        key = calc_key(check_symbol(symbol), check_indicator(indicator))
        raw = await self.get_raw(key)
        return None if raw is None else self._read(raw, key, indicator)

    async def all(self, symbol: str) -> dict[str, Calc]:
        """Every indicator of a symbol, by name (SCAN over the small calculations db)."""
        prefix = owner_prefix(Store.CALC, check_symbol(symbol))
        keys = sorted(await self.scan_keys(glob_escape(prefix) + "*"))
        raws = await self.mget_raw(keys)
        out: dict[str, Calc] = {}
        for key, raw in zip(keys, raws, strict=True):
            if raw is not None:
                name = key[len(prefix) :]
                out[name] = self._read(raw, key, name)
        return out
