"""Console sign-in sessions, kept in Redis with a TTL so every manager replica sees them.

A session is a random token (sent only as an HTTP-only cookie) plus a CSRF token the
page's JavaScript echoes in a header. Redis stores only a hash of the session token,
so a Redis dump cannot be replayed as a cookie.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson
import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import RedisError

from common.errors import AuthenticationFailed, RedisUnavailable
from manager.api.console_throttle import SIGNIN, SignInThrottle
from manager.api.keys import CONFIG

SESSION_TTL = 30 * 60
KEY_PREFIX = "kraken:console:"


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    access_key: str
    csrf_token: str = ""

    def check_csrf(self, presented: str | None) -> None:
        if not presented or not hmac.compare_digest(presented.encode(),
                                                    self.csrf_token.encode()):
            raise AuthenticationFailed("missing or wrong CSRF token")


def _key(token: str) -> str:
    return KEY_PREFIX + hashlib.sha256(token.encode()).hexdigest()


class ConsoleSessionStore:
    """create / get / delete console sessions; Redis errors become RedisUnavailable (503)."""

    def __init__(self, client: aioredis.Redis, ttl: int = SESSION_TTL) -> None:
        self._redis = client
        self.ttl = ttl

    async def create(self, access_key: str) -> tuple[str, ConsoleSession]:
        token = secrets.token_urlsafe(32)
        session = ConsoleSession(access_key, secrets.token_urlsafe(32))
        value = orjson.dumps({"access_key": access_key, "csrf": session.csrf_token})
        try:
            await self._redis.set(_key(token), value, ex=self.ttl)
        except RedisError:
            raise RedisUnavailable("cannot store the console session") from None
        return token, session

    async def get(self, token: str) -> ConsoleSession | None:
        try:
            raw = await self._redis.get(_key(token))
        except RedisError:
            raise RedisUnavailable("cannot read console sessions") from None
        if raw is None:
            return None
        data = orjson.loads(raw)
        return ConsoleSession(str(data["access_key"]), str(data["csrf"]))

    async def ttl_of(self, token: str) -> int:
        try:
            return max(0, int(await self._redis.ttl(_key(token))))
        except RedisError:
            return 0

    async def delete(self, token: str) -> None:
        try:
            await self._redis.delete(_key(token))
        except RedisError:
            raise RedisUnavailable("cannot end the console session") from None

    async def close(self) -> None:
        await self._redis.aclose()


CONSOLE_SESSIONS = web.AppKey("kraken.console_sessions", ConsoleSessionStore)


async def console_sessions_ctx(app: web.Application) -> AsyncIterator[None]:
    client = aioredis.Redis.from_url(app[CONFIG].redis.url, socket_connect_timeout=3)
    store = ConsoleSessionStore(client)
    app[CONSOLE_SESSIONS] = store
    app[SIGNIN] = SignInThrottle(client, app[CONFIG].console)
    yield
    await store.close()
