"""Publishing session status transitions on Redis (channel ``kraken.events``)."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from common.errors import ServiceUnavailable
from manager.outage import OutageLog
from manager.services.lifecycle import Transition

log = logging.getLogger(__name__)

EVENTS_CHANNEL = "kraken.events"


class EventBus:
    """Fan-out of lifecycle events to every replica and subscriber."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self.outage = OutageLog("Redis (events)")

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
                self.outage.failed(e)
                return
        self.outage.ok()

    async def announce(self, event: dict[str, Any]) -> None:
        """Publish one event that is not a status change (e.g. ``queue-changed``);
        best effort like ``publish``."""
        try:
            await self.client.publish(EVENTS_CHANNEL, orjson.dumps(event))
        except (RedisError, OSError) as e:
            self.outage.failed(e)

    async def follow(self, on_event: Callable[[dict[str, Any]], None]) -> None:
        """Call ``on_event`` for every event any replica publishes, forever (through
        Redis outages: it subscribes again once Redis is back)."""
        while True:
            try:
                async with self.client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(EVENTS_CHANNEL)
                    async for message in pubsub.listen():
                        _dispatch(message, on_event)
            except (RedisError, OSError) as e:
                self.outage.failed(e)
            await asyncio.sleep(1.0)

    async def close(self) -> None:
        await self.client.aclose()


def _dispatch(message: Any, on_event: Callable[[dict[str, Any]], None]) -> None:
    if not isinstance(message, dict) or message.get("type") != "message":
        return
    try:
        event = orjson.loads(message["data"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return
    if isinstance(event, dict):
        on_event(event)


def _safe_url(url: str) -> str:
    """The URL without a password."""
    if "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
