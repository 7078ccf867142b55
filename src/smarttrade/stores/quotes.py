"""Quotes (db 0): one key per symbol and second, plus a latest-quote index for O(1) reads."""

from __future__ import annotations

import time

from smarttrade.errors import DecodeError, ValidationError
from smarttrade.keyspace import LAST_QUOTE_TTL, SPECS, Store, last_quote_key, quote_key
from smarttrade.models import Quote, encode
from smarttrade.redis.scripts import QUOTE_PUT
from smarttrade.stores.base import BaseStore
from smarttrade.symbols import check_symbol, spec_for

MAX_FUTURE_S = 86_400


class QuoteStore(BaseStore):
    spec = SPECS[Store.QUOTES]
    corrupt_reads = 0

    async def put(self, quote: Quote) -> None:
        if quote.symbol is None or quote.timestamp is None:
            raise ValidationError("quote", "symbol and timestamp are required to write a quote")
        quote = self.checked(quote, "quote")
        spec_for(quote.symbol)
        if quote.timestamp > time.time() + MAX_FUTURE_S:
            # the latest-quote index only moves forward: a far-future stamp would freeze it
            raise ValidationError("quote", f"timestamp {quote.timestamp} is more than a day ahead")
        second = int(quote.timestamp)
        await self.run_script(
            QUOTE_PUT,
            [quote_key(quote.symbol, second), last_quote_key(quote.symbol)],
            [encode(quote), self.ttl, quote.timestamp, LAST_QUOTE_TTL],
        )

    def _read(self, raw: bytes, key: str, symbol: str, second: int | None) -> Quote:
        return self.decode_filled(Quote, raw, key, symbol=symbol, timestamp=second)

    async def get(self, symbol: str, epoch_s: int) -> Quote | None:
        key = quote_key(check_symbol(symbol), epoch_s)
        raw = await self.get_raw(key)
        return None if raw is None else self._read(raw, key, symbol, int(epoch_s))

    async def latest(self, symbol: str) -> Quote | None:
        key = last_quote_key(check_symbol(symbol))
        raw = await self.get_raw(key)
        return None if raw is None else self._read(raw, key, symbol, None)

    async def history(self, symbol: str, until: int | None = None) -> list[Quote]:
        """Quotes of the last TTL window, oldest first: one MGET, no scan.

        The window ends at ``until``, else at the latest quote (so a replay of old data still
        has a history), else now.
        """
        if until is None:
            last = await self.latest(symbol)
            until = int(last.timestamp) if last and last.timestamp is not None else int(time.time())
        assert self.ttl is not None
        seconds = list(range(until - self.ttl + 1, until + 1))
        keys = [quote_key(check_symbol(symbol), s) for s in seconds]
        raws = await self.mget_raw(keys)
        out = []
        for raw, key, s in zip(raws, keys, seconds, strict=True):
            if raw is None:
                continue
            try:
                out.append(self._read(raw, key, symbol, s))
            except DecodeError:
                self.corrupt_reads += 1  # one bad key must not hide the rest of the history
        return out
