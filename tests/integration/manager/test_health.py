"""Health checks: the load balancers' GET /health and the admin detail view."""
from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from manager.api import health
from manager.db.engine import make_engine


async def _public(harness: Any) -> tuple[int, Any]:
    resp = await harness.client.get("/health")  # no signature, no version header
    return resp.status, await resp.json()


async def test_public_health_is_minimal_and_unsigned(harness: Any) -> None:
    assert await _public(harness) == (200, {"status": "ok"})


async def test_admin_detail_lists_components_and_agents(harness: Any) -> None:
    admin = await harness.keypair(is_admin=True)
    await harness.agent("agent-1")
    status, body = await harness.call("GET", "/admin/health", keys=admin)
    assert status == 200, body
    assert body["status"] == "ok" and body["api"] == {"status": "up"}
    for part in ("postgresql", "redis"):
        assert body[part]["status"] == "up" and body[part]["latency_ms"] >= 0
    assert body["agent_link"]["agents"] == ["agent-1"]
    assert body["agent_link"]["connected_agents"] == 1
    status, body = await harness.call("GET", "/admin/health")  # not an admin
    assert status == 403, body


async def test_postgres_down_answers_503(harness: Any, monkeypatch: Any) -> None:
    dead = make_engine("postgresql+asyncpg://nobody:x@127.0.0.1:1/none")
    real = health.check_postgres
    monkeypatch.setattr(health, "check_postgres", lambda _engine: real(dead))
    monkeypatch.setattr(health, "CACHE_SECONDS", 0.0)
    admin = await harness.keypair(is_admin=True)
    try:
        assert await _public(harness) == (503, {"status": "unavailable"})
        status, body = await harness.call("GET", "/admin/health", keys=admin)
        assert status == 503 and body["postgresql"]["status"] == "down", body
        assert body["redis"]["status"] == "up"
    finally:
        await dead.dispose()


async def test_redis_down_answers_503(harness: Any, monkeypatch: Any) -> None:
    dead = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    real = health.check_redis
    monkeypatch.setattr(health, "check_redis", lambda _client: real(dead))
    monkeypatch.setattr(health, "CACHE_SECONDS", 0.0)
    try:
        assert await _public(harness) == (503, {"status": "unavailable"})
    finally:
        await dead.aclose()
