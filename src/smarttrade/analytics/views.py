"""Reading analytics back for people and machines: recent bars with their footprint metrics, and
the current indicator values (closed bars from the calculations store, plus a peek at the forming
bar from the ingester's saved state)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import msgspec

from smarttrade.analytics.bars import SymbolAnalytics
from smarttrade.analytics.calendar import calendar_for
from smarttrade.analytics.footprint import BarFootprint, FootprintParams, dense, metrics
from smarttrade.keyspace import Store, bar_footprint_key, bar_index_key, bar_key, checkpoint_pattern
from smarttrade.redis.connections import redis_errors
from smarttrade.redis.topology import Topology
from smarttrade.settings import Settings
from smarttrade.symbols import SymbolSpec, spec_for
from smarttrade.timeframes import parse_timeframes

MAX_LADDER_LEVELS = 20_000


@dataclass
class BarView:
    timeframe: str
    start: int
    fields: dict[str, str]
    footprint: BarFootprint | None

    def as_json(self, spec: SymbolSpec) -> dict[str, Any]:
        """Prices and volumes in the instrument's own units (``bid`` 5.234 BTC, not 5234)."""
        fp = self.footprint
        price_scale, q = spec.price_scale, spec.qty
        out: dict[str, Any] = {**self.fields, "timeframe": self.timeframe, "start": self.start}
        if fp is not None:
            out["footprint"] = {
                "poc": fp.poc / price_scale,
                "value_area": [fp.value_area[0] / price_scale, fp.value_area[1] / price_scale],
                "delta": q(fp.delta),
                "volume": q(fp.volume),
                "unfinished_high": fp.unfinished_high,
                "unfinished_low": fp.unfinished_low,
                "stacked": [[side, lo / price_scale, hi / price_scale] for side, lo, hi in fp.stacked],
                "levels": [
                    {
                        "price": lv / price_scale,
                        "bid": q(s),
                        "ask": q(b),
                        "delta": q(b - s),
                        "buy_imbalance": bi,
                        "sell_imbalance": si,
                    }
                    for lv, b, s, bi, si in zip(
                        fp.levels.tolist(),
                        fp.buy.tolist(),
                        fp.sell.tolist(),
                        fp.buy_imbalance.tolist(),
                        fp.sell_imbalance.tolist(),
                        strict=True,
                    )
                ],
            }
        return out


def footprint_params(settings: Settings, spec: SymbolSpec) -> FootprintParams:
    """The metric settings for one instrument: SMARTTRADE_IMBALANCE_MIN_VOLUME is in its own
    units (5 contracts; 0.5 BTC), the metrics work in its quantity units."""
    min_units = math.ceil(settings.smarttrade_imbalance_min_volume * spec.qty_unit)
    return FootprintParams(
        ratio=settings.smarttrade_imbalance_ratio,
        min_volume=max(1, min_units),
        stacked=settings.smarttrade_stacked_levels,
        value_area=settings.smarttrade_value_area,
    )


class AnalyticsViews:
    """Read-only views over what the ingester wrote: recent bars with their footprint metrics and
    a peek at the forming bar. Clients come from the topology, so no store is needed here."""

    def __init__(self, topology: Topology, settings: Settings) -> None:
        self.topology = topology
        self.settings = settings

    async def recent_bars(self, symbol: str, timeframe: str, count: int) -> list[BarView]:
        """The last ``count`` bars of a symbol and timeframe, oldest first, with footprint metrics."""
        settings = self.settings
        spec = spec_for(symbol)
        if timeframe not in parse_timeframes(settings.smarttrade_timeframes):
            raise ValueError(f"timeframe {timeframe!r} is not one of {settings.smarttrade_timeframes}")
        bars = self.topology.client(Store.ORDERFLOW)
        fps = self.topology.client(Store.FOOTPRINT)
        params = footprint_params(settings, spec)
        out: list[BarView] = []
        with redis_errors(self.topology.url):
            starts = [int(s) for s in await bars.zrevrange(bar_index_key(symbol, timeframe), 0, count - 1)]
            for start in reversed(starts):
                raw = await bars.hgetall(bar_key(symbol, timeframe, start))
                if not raw:
                    continue  # expired
                fields = {k.decode(): v.decode() for k, v in raw.items()}
                volumes: dict[int, list[int]] = {}
                for name, value in (await fps.hgetall(bar_footprint_key(symbol, timeframe, start))).items():
                    side, _, level = name.decode().partition(":")
                    entry = volumes.setdefault(int(level), [0, 0])
                    entry[0 if side == "b" else 1] += spec.qty_units(value)
                traded = {k: (b, s) for k, (b, s) in volumes.items() if b > 0 or s > 0}  # cancels leave 0s
                footprint = None
                if traded:
                    span = (max(traded) - min(traded)) // spec.tick_units + 1
                    if span > MAX_LADDER_LEVELS:
                        raise ValueError(
                            f"{symbol} {timeframe} bar {start} spans {span} levels (a bad print?); "
                            f"the ladder shows at most {MAX_LADDER_LEVELS}"
                        )
                    levels, buy, sell = dense(traded, spec.tick_units)
                    footprint = metrics(levels, buy, sell, params)
                out.append(BarView(timeframe, start, fields, footprint))
        return out

    async def forming_peek(self, symbol: str) -> dict[str, dict[str, Any]]:
        """Per timeframe, indicator values as if the forming bar closed now (from the newest saved
        ingest state of the symbol); empty when no ingester has saved one."""
        client = self.topology.client(Store.QUOTES)
        best: tuple[int, bytes, bytes | None] | None = None  # the source with the newest forming bar
        with redis_errors(self.topology.url):
            async for key in client.scan_iter(match=checkpoint_pattern(symbol), count=500):
                state, indicators = await client.hmget(key, "analytics", "indicators")
                if not state:
                    continue
                frames = msgspec.json.decode(state)["frames"].values()
                newest = max((f["bar"]["start"] for f in frames if f["bar"]), default=0)
                if best is None or newest > best[0]:
                    best = (newest, state, indicators)
        if best is None:
            return {}
        s = self.settings
        spec = spec_for(symbol)
        analytics = SymbolAnalytics(
            symbol,
            spec,
            calendar_for(spec, s.smarttrade_sessions),
            parse_timeframes(s.smarttrade_timeframes),
            self.topology.dbs(Store.ORDERFLOW, Store.FOOTPRINT, Store.CALC),
            s.ttl(Store.CALC) or 0,
        )
        analytics.load(msgspec.json.decode(best[1]), msgspec.json.decode(best[2]) if best[2] else None)
        return {
            tf: {name: value for name, (value, _) in analytics.peek(tf).items() if value is not None}
            for tf in analytics.frames
        }
