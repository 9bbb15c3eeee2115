"""Health checks (seed 003's check: API, database, Redis, agent link).

``GET /health`` needs no signature and answers only ``{"status": "ok"}`` (200) or
``{"status": "unavailable"}`` (503, PostgreSQL or Redis down): enough for a load
balancer, nothing for a stranger. It is not rate limited; instead one probe result
serves every caller for ``CACHE_SECONDS``, so a flood of checks costs no database or
Redis round trips. ``GET /admin/health`` (signed, admin keypairs) gives the detail:
each component's state and probe latency, and the agents this replica hears.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from manager.api.auth import admin_caller
from manager.api.keys import DB, EVENTS, REGISTRY
from manager.api.problems import json_response
from manager.api.version import PREFIXES

PROBE_TIMEOUT = 2.0  # seconds a component may take to answer before it counts as down
CACHE_SECONDS = 1.0
PUBLIC_PATH = "/health"


@dataclass(frozen=True, slots=True)
class Probe:
    up: bool
    latency_ms: float
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": "up" if self.up else "down",
                               "latency_ms": round(self.latency_ms, 2)}
        if self.error:
            out["error"] = self.error
        return out


async def _timed(check: Any) -> Probe:
    start = time.monotonic()
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            await check()
    except TimeoutError:
        return Probe(False, (time.monotonic() - start) * 1000,
                     f"no answer within {PROBE_TIMEOUT:g}s")
    except Exception as e:  # any failure of the component is "down", with its kind
        return Probe(False, (time.monotonic() - start) * 1000, type(e).__name__)
    return Probe(True, (time.monotonic() - start) * 1000)


async def check_postgres(engine: Any) -> Probe:
    async def ping() -> None:
        async with engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
    return await _timed(ping)


async def check_redis(client: Any) -> Probe:
    return await _timed(client.ping)


@dataclass(frozen=True, slots=True)
class Report:
    at: float
    postgres: Probe
    redis: Probe

    @property
    def healthy(self) -> bool:
        return self.postgres.up and self.redis.up


class HealthCache:
    """At most one probe round in flight; its result serves callers for a while."""

    def __init__(self) -> None:
        self._last: Report | None = None
        self._round: asyncio.Task[Report] | None = None

    async def report(self, app: web.Application) -> Report:
        last = self._last
        if last is not None and time.monotonic() - last.at < CACHE_SECONDS:
            return last
        if self._round is None or self._round.done():
            self._round = asyncio.ensure_future(self._probe(app))
        return await asyncio.shield(self._round)

    async def close(self) -> None:
        if self._round is not None and not self._round.done():
            self._round.cancel()
            await asyncio.gather(self._round, return_exceptions=True)

    async def _probe(self, app: web.Application) -> Report:
        pg, redis = await asyncio.gather(check_postgres(app[DB]),
                                         check_redis(app[EVENTS].client))
        self._last = Report(time.monotonic(), pg, redis)
        return self._last


HEALTH = web.AppKey("kraken.health", HealthCache)


async def health(request: web.Request) -> web.Response:
    report = await request.app[HEALTH].report(request.app)
    return json_response({"status": "ok" if report.healthy else "unavailable"},
                         200 if report.healthy else 503)


async def admin_health(request: web.Request) -> web.Response:
    admin_caller(request)
    report = await request.app[HEALTH].report(request.app)
    registry = request.app[REGISTRY]
    heard = sorted(registry.heard_agents())
    link_up = registry.link is not None
    body = {
        "status": "ok" if report.healthy else "unavailable",
        "api": {"status": "up"},
        "postgresql": report.postgres.to_json(),
        "redis": report.redis.to_json(),
        "agent_link": {"status": "up" if link_up else "down",
                       "connected_agents": len(heard), "agents": heard,
                       "database_writes": "down" if registry.db.down else "up"},
    }
    return json_response(body, 200 if report.healthy else 503)


async def _close(app: web.Application) -> None:
    await app[HEALTH].close()


def add_routes(app: web.Application) -> None:
    app[HEALTH] = HealthCache()
    app.on_cleanup.append(_close)
    app.router.add_get(PUBLIC_PATH, health)
    for prefix in PREFIXES:
        app.router.add_get(f"{prefix}/admin/health", admin_health)
