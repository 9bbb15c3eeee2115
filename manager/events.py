"""Publishing session status transitions on Redis (channel ``kraken.events``)."""
from __future__ import annotations

import logging
from collections.abc import Iterable

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from common.errors import ServiceUnavailable
from manager.services.lifecycle import Transition

log = logging.getLogger(__name__)

EVENTS_CHANNEL = "kraken.events"


class EventBus:
    """Fan-out of lifecycle events to every replica and subscriber."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client

    @classmethod
    async def connect(cls, url: str) -> EventBus:
        """Connect and ping; raise ServiceUnavailable with a clear message if Redis is down."""
        # a bounded pool that makes callers wait for a connection under bursts, rather
        # than failing (which would let rate-limited requests through unchecked)
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=64, timeout=5, socket_connect_timeout=3)
        client = aioredis.Redis.from_pool(pool)  # the client owns and closes the pool
        try:
            await client.ping()
        except (RedisError, OSError) as e:
            await client.aclose()
            raise ServiceUnavailable(f"cannot reach Redis at {_safe_url(url)}: {e}") from None
        return cls(client)

    async def publish(self, transitions: Iterable[Transition | None]) -> None:
        """Best effort: a Redis hiccup is logged, never fails the caller."""
        for t in transitions:
            if t is None:
                continue
            try:
                await self.client.publish(EVENTS_CHANNEL, orjson.dumps(t.to_event()))
            except (RedisError, OSError) as e:
                log.warning("cannot publish a kernel event: %s", e)
                return

    async def close(self) -> None:
        await self.client.aclose()


def _safe_url(url: str) -> str:
    """The URL without a password."""
    if "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
