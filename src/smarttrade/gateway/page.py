"""The dashboard (docs/dashboard.md): the page at ``/``, its static files, and the health strip's
one endpoint.

The page needs no token to load: it is static, reads ``?token=`` from its own URL and sends it to
the API and the WebSocket, which check it. ``/api/dashboard/health`` reads the same ops figures as
``monitor`` and the exporter (ops/watch.py), so the strip never disagrees with them; one reading
is shared by every tab for ``HEALTH_MAX_AGE_S``, so many open dashboards cost Redis one INFO.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field

from smarttrade.errors import SmartTradeError
from smarttrade.gateway.deps import Ctx, Who
from smarttrade.gateway.errors import ERROR_RESPONSES
from smarttrade.ops.watch import Observation, Watcher
from smarttrade.redis.connections import redis_errors

STATIC = Path(__file__).with_name("static")
HEALTH_MAX_AGE_S = 2.0  # the page polls every 5 s; tabs polling together share one reading
HEALTH_TIMEOUT_S = 3.0
NO_CACHE = {"Cache-Control": "no-cache"}  # a new build's modules load on the next visit

router = APIRouter(responses=ERROR_RESPONSES)


@router.get("/", include_in_schema=False)
async def page() -> Response:
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=NO_CACHE)


_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".svg": "image/svg+xml"}


@router.get("/static/{path:path}", include_in_schema=False)
async def static(path: str) -> Response:
    """Files under static/ only: a path that resolves outside it is a 404, never a read."""
    root = STATIC.resolve()
    target = (root / path).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        return Response(status_code=404)
    return FileResponse(target, media_type=_TYPES.get(target.suffix), headers=NO_CACHE)


class Ingester(BaseModel):
    source: str
    lag_ms: float
    trades: int
    age_s: float = Field(description="since the ingester last published its figures")


class CheckOut(BaseModel):
    check: str
    level: str = Field(description="ok, warning or critical")
    value: str
    message: str


class DashboardHealth(BaseModel):
    """One reading for the health strip; ``redis_up`` false (and ``error``) when Redis is away."""

    redis_up: bool
    error: str | None = None
    age_s: float = Field(0.0, description="how old this reading is (shared by every tab)")
    used_memory: int | None = None
    maxmemory: int | None = None
    ops_s: float | None = Field(None, description="commands clients sent per second (scripts' once)")
    clients: int | None = None
    hit_rate: float | None = Field(None, description="keyspace hits / lookups over the last interval")
    alert_level: str | None = Field(None, description="the worst of the runbook's checks")
    checks: list[CheckOut] = Field(default_factory=list)
    ingest_lag_ms: float | None = Field(None, description="the largest lag of the running ingesters")
    ingesters: list[Ingester] = Field(default_factory=list)


class _HealthCache:
    """The newest reading and when it was taken; a lock so concurrent polls share one INFO."""

    def __init__(self, watcher: Watcher, url: str) -> None:
        self.watcher = watcher
        self.url = url
        self.lock = asyncio.Lock()
        self.at = 0.0
        self.reading: DashboardHealth | None = None

    async def get(self) -> DashboardHealth:
        async with self.lock:
            now = time.monotonic()
            if self.reading is None or now - self.at > HEALTH_MAX_AGE_S:
                self.reading, self.at = await self._read(), now
            return self.reading.model_copy(update={"age_s": round(now - self.at, 3)})

    async def _read(self) -> DashboardHealth:
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT_S):
                with redis_errors(self.url):  # redis-py's failures as our one-line errors
                    obs = await self.watcher.poll()
        except TimeoutError:
            return DashboardHealth(redis_up=False, error=f"Redis did not answer in {HEALTH_TIMEOUT_S:g} s")
        except (SmartTradeError, OSError) as exc:
            return DashboardHealth(redis_up=False, error=str(exc))
        return reading(obs)


def reading(obs: Observation) -> DashboardHealth:
    s, r = obs.sample, obs.rates
    hit_rate = r.hit_rate if r and r.hit_rate is not None else s.hit_rate
    worst = max(obs.checks, key=lambda c: c.level, default=None)
    lags = [i.lag_ms for i in obs.ingesters]
    return DashboardHealth(
        redis_up=True,
        used_memory=s.used_memory,
        maxmemory=s.maxmemory,
        ops_s=round(r.ops_s, 1) if r else float(s.ops_per_sec),
        clients=s.clients,
        hit_rate=hit_rate,
        alert_level=worst.level.label if worst else "ok",
        checks=[CheckOut(**c.as_json()) for c in obs.checks],  # type: ignore[arg-type]
        ingest_lag_ms=max(lags) if lags else None,
        ingesters=[
            Ingester(source=i.source, lag_ms=i.lag_ms, trades=i.trades, age_s=i.age_s) for i in obs.ingesters
        ],
    )


def _cache(request: Request, ctx: Ctx) -> _HealthCache:
    """One per app, with its own watcher (the exporter's keeps its own scrape intervals)."""
    cache = getattr(request.app.state, "dashboard_health", None)
    if cache is None:
        cache = request.app.state.dashboard_health = _HealthCache(
            Watcher.of(ctx.topology, ctx.settings, ctx.topology.url), ctx.topology.url
        )
    return cache


@router.get("/api/dashboard/health", response_model=DashboardHealth, tags=["dashboard"])
async def dashboard_health(request: Request, ctx: Ctx, _: Who) -> DashboardHealth:
    """Redis memory, ops/s, clients, hit rate, the runbook's alert level and ingest lag, for the
    page's health strip (any user's token). Redis away is a reading (``redis_up`` false), not a 5xx."""
    return await _cache(request, ctx).get()
