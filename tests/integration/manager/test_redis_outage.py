"""A Redis outage (a private redis-server, stopped and started by the test): sessions
keep being created, used and destroyed (events and rate limits are best-effort), what
needs Redis answers 503 redis-unavailable, and nothing needs an operator after."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from manager.api.console import SESSION_COOKIE
from manager.config import ManagerConfig
from tests.integration.manager.conftest import open_harness, wait_for
from tests.integration.manager.privatepg import PrivateRedis


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.remove()


async def test_redis_outage_degrades_and_recovers(mgr_config: ManagerConfig,
                                                  private_redis: PrivateRedis,
                                                  caplog: Any) -> None:
    config = mgr_config.model_copy(update={"redis": mgr_config.redis.model_copy(
        update={"url": private_redis.url})})
    async with open_harness(config) as h:
        await h.agent()
        assert (await h.create("before"))[0] == 201
        private_redis.stop()
        try:
            assert (await h.create("during"))[0] == 201
            status, body = await h.call("POST", "/kernel/during", {"code": "1"})
            assert status == 200, body
            assert (await h.call("DELETE", "/kernel/during"))[0] == 200
            resp = await h.client.get("/console/session",
                                      cookies={SESSION_COOKIE: "whatever"})
            body = await resp.json(content_type=None)
            assert resp.status == 503 and body["type"].endswith("redis-unavailable"), body
        finally:
            private_redis.start()

        async def works() -> bool:
            return (await h.call("POST", "/kernel/before", {"code": "1"}))[0] == 200
        await wait_for(works, what="service after Redis is back")
        assert (await h.create("after"))[0] == 201
    assert "Traceback" not in caplog.text
    assert " 500 " not in caplog.text
