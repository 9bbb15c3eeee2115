"""Brute force on the console sign-in: throttled per access key and per client IP
before the secret is looked at (a right secret during throttling gets 429 too)."""
from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from aiohttp import ClientResponse

from manager.config import ManagerConfig
from tests.integration.manager.conftest import REDIS_URL, Harness, make_manager_config

# a Redis database of its own: the per-IP counter of 127.0.0.1 must not leak into
# the other console tests
THROTTLE_REDIS = REDIS_URL.rsplit("/", 1)[0] + "/14"
PER_KEY, PER_IP = 5, 8


async def _clear() -> None:
    client = aioredis.Redis.from_url(THROTTLE_REDIS)
    try:
        keys = [k async for k in client.scan_iter("kraken:signin:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
async def mgr_config(mgr_db_url: str, tmp_path: Path) -> AsyncIterator[ManagerConfig]:
    await _clear()
    yield make_manager_config(mgr_db_url, tmp_path, redis={"url": THROTTLE_REDIS}, console={
        "window": 300, "max_failures_per_key": PER_KEY, "max_failures_per_ip": PER_IP})
    await _clear()


async def _login(h: Harness, access: str, secret: str) -> ClientResponse:
    return await h.client.post("/console/login",
                               json={"access_key": access, "secret_key": secret})


async def test_guessing_one_key_is_throttled_before_the_secret_is_checked(
        harness: Harness) -> None:
    h = harness
    access, secret = await h.keypair(is_admin=True)
    for _ in range(PER_KEY):
        assert (await _login(h, access, secrets.token_urlsafe(20))).status == 401
    throttled = await _login(h, access, secrets.token_urlsafe(20))
    assert throttled.status == 429
    problem = await throttled.json()
    assert problem["type"].endswith("/sign-in-throttled")
    assert 0 < int(throttled.headers["Retry-After"]) <= 300
    assert problem["retry_after"] == int(throttled.headers["Retry-After"])
    right = await _login(h, access, secret)  # the right secret is not even looked at
    assert right.status == 429 and "kraken_console" not in right.cookies
    # another keypair from the same address is not locked out by this key
    other = await h.keypair(is_admin=True)
    assert (await _login(h, *other)).status == 200


async def test_guessing_many_keys_from_one_address_is_throttled(harness: Harness) -> None:
    h = harness
    for _ in range(PER_IP):
        resp = await _login(h, "AKIA" + secrets.token_hex(8).upper(), "guess")
        assert resp.status == 401
    access, secret = await h.keypair(is_admin=True)
    resp = await _login(h, access, secret)
    assert resp.status == 429 and "Retry-After" in resp.headers


async def test_successful_sign_in_resets_the_key_counter(harness: Harness) -> None:
    h = harness
    access, secret = await h.keypair(is_admin=True)
    for _ in range(PER_KEY - 1):
        assert (await _login(h, access, "wrong-secret")).status == 401
    assert (await _login(h, access, secret)).status == 200
    # without the reset the 6th failure of this key would be throttled
    for _ in range(PER_KEY - 1):
        assert (await _login(h, access, "wrong-secret")).status == 401
