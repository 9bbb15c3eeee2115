"""The rate limiter's hot path: far from the limit no request waits for Redis,
yet every request is counted there; near the limit every request waits."""
from __future__ import annotations

import asyncio
import os
import secrets

import redis.asyncio as aioredis

from manager.api.ratelimit import KEY_PREFIX, RateLimiter

REDIS_URL = os.environ.get("KRAKEN_TEST_REDIS_URL", "redis://127.0.0.1:16379/0")


async def test_far_from_the_limit_counts_in_background_but_exactly() -> None:
    client = aioredis.Redis.from_pool(aioredis.BlockingConnectionPool.from_url(
        REDIS_URL, max_connections=16, timeout=5))
    limiter = RateLimiter(client, window=900, keypair_default=10_000, anonymous=10)
    bucket = f"test:{secrets.token_hex(4)}"
    try:
        states = [await limiter.hit(bucket, 10_000) for _ in range(300)]
        assert all(s.allowed for s in states)
        assert [s.used for s in states[:3]] == [1, 2, 3]
        assert len(limiter._pending) > 0  # the fast path did not wait for Redis
        await limiter.close()
        assert await client.zcard(KEY_PREFIX + bucket) == 300
    finally:
        await client.delete(KEY_PREFIX + bucket)
        await client.aclose()


async def test_near_the_limit_every_request_waits_and_the_boundary_is_exact() -> None:
    client = aioredis.Redis.from_pool(aioredis.BlockingConnectionPool.from_url(
        REDIS_URL, max_connections=16, timeout=5))
    limiter = RateLimiter(client, window=900, keypair_default=100, anonymous=10)
    bucket = f"test:{secrets.token_hex(4)}"
    try:
        results = await asyncio.gather(*(limiter.hit(bucket, 100) for _ in range(200)))
        assert sum(s.allowed for s in results) == 100
        assert not limiter._pending
        assert await client.zcard(KEY_PREFIX + bucket) == 100
    finally:
        await client.delete(KEY_PREFIX + bucket)
        await client.aclose()
