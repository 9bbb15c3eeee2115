"""Rate limits (seed 004 §2.8): a rolling 15-minute window per caller, in Redis.

An authenticated request counts against its access key (limit: the keypair's
``keypair_policies.rate_limit``, else ``ratelimit.keypair_default``); every other request
(public routes, failed authentication, unknown routes) counts against the client
IP (``ratelimit.anonymous``) once it is answered. The window is a Redis sorted set
per caller, trimmed, counted and extended by ONE Lua script — atomic, exact, shared
by every manager replica; the hot path waits for it only near the limit (see
``RateLimiter``). Redis time is
the clock, so replicas with skewed clocks agree. A request past the limit is not
counted and gets a 429 problem. Every response carries ``X-RateLimit-Limit``,
``X-RateLimit-Remaining`` and ``X-RateLimit-Window`` (seconds).
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import RedisError

from common.errors import RateLimitExceeded
from manager.api.keys import CONFIG, EVENTS
from manager.services.keypairs import KeypairInfo

log = logging.getLogger(__name__)

KEY_PREFIX = "kraken.ratelimit."

# KEYS[1]: the caller's window; ARGV: window (µs), limit, a unique member
_WINDOW_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count >= limit then
  return {count, 0}
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
return {count + 1, 1}
"""


@dataclass(frozen=True, slots=True)
class RateState:
    """The caller's window after this request."""

    limit: int
    used: int
    window: int  # seconds
    allowed: bool

    @property
    def remaining(self) -> int:
        return max(self.limit - self.used, 0)


RATE = web.RequestKey("kraken.rate", RateState)


class RateLimiter:
    """Counts requests per caller in a rolling window shared through Redis.

    Every request is counted in Redis. A request waits for Redis only when the
    caller may be near its limit: while the last answer from Redis (at most
    ``FRESH`` seconds old) left more than ``margin(limit)`` requests, the count is
    sent in the background and the request goes on with the local estimate, so
    the execute hot path pays no Redis round trip. Near the limit every request
    waits, so the 429 boundary stays exact up to what other replicas have in
    flight at that moment.
    """

    FRESH = 1.0

    def __init__(self, client: aioredis.Redis, window: int, keypair_default: int,
                 anonymous: int) -> None:
        self.window = window
        self.keypair_default = keypair_default
        self.anonymous = anonymous
        self._script = client.register_script(_WINDOW_LUA)
        self._nonce = secrets.token_hex(4)
        self._seq = itertools.count()
        self._known: dict[str, tuple[float, int]] = {}  # bucket → (when, used)
        self._pending: set[asyncio.Task[RateState]] = set()

    @staticmethod
    def margin(limit: int) -> int:
        return max(100, limit // 50)

    async def hit(self, bucket: str, limit: int) -> RateState:
        """Count one request of ``bucket``; a Redis failure lets it through (logged)."""
        known = self._known.get(bucket)
        now = time.monotonic()
        if known is not None and now - known[0] < self.FRESH \
                and limit - known[1] > self.margin(limit):
            self._known[bucket] = (known[0], known[1] + 1)
            task = asyncio.ensure_future(self._count(bucket, limit))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
            return RateState(limit, known[1] + 1, self.window, True)
        return await self._count(bucket, limit)

    async def _count(self, bucket: str, limit: int) -> RateState:
        member = f"{self._nonce}.{next(self._seq)}"
        try:
            used, allowed = await self._script(
                keys=[KEY_PREFIX + bucket], args=[self.window * 1_000_000, limit, member])
        except (RedisError, OSError) as e:
            log.warning("rate limit not checked (Redis: %s)", type(e).__name__)
            return RateState(limit, 0, self.window, True)
        if len(self._known) > 100_000:
            self._known.clear()
        self._known[bucket] = (time.monotonic(), int(used))
        return RateState(limit, int(used), self.window, bool(allowed))

    async def close(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)


LIMITER = web.AppKey("kraken.ratelimiter", RateLimiter)


async def _apply(request: web.Request, bucket: str, limit: int) -> None:
    state = await request.app[LIMITER].hit(bucket, limit)
    request[RATE] = state
    if not state.allowed:
        raise RateLimitExceeded(f"more than {limit} requests in {state.window} seconds; "
                                "retry later")


async def limit_keypair(request: web.Request, keypair: KeypairInfo) -> None:
    """Called by the auth middleware once the caller is known, before the handler."""
    limiter = request.app[LIMITER]
    await _apply(request, "ak:" + keypair.access_key,
                 keypair.rate_limit or limiter.keypair_default)


UNCOUNTED = frozenset({"/health"})  # served from a cache (manager.api.health)


async def _limit_anonymous(request: web.Request) -> None:
    if RATE not in request and request.path not in UNCOUNTED:
        await _apply(request, "ip:" + (request.remote or "unknown"),
                     request.app[LIMITER].anonymous)


@web.middleware
async def ratelimit_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Counts by IP whatever the auth middleware did not count by access key."""
    try:
        response = await handler(request)
    except Exception:
        await _limit_anonymous(request)
        raise
    await _limit_anonymous(request)
    return response


async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: the X-RateLimit-* headers on every response."""
    state = request.get(RATE)
    if state is not None:
        response.headers["X-RateLimit-Limit"] = str(state.limit)
        response.headers["X-RateLimit-Remaining"] = str(state.remaining)
        response.headers["X-RateLimit-Window"] = str(state.window)


async def ratelimit_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx (after the event bus): the limiter on the shared Redis client."""
    cfg = app[CONFIG].ratelimit
    app[LIMITER] = RateLimiter(app[EVENTS].client, cfg.window, cfg.keypair_default,
                               cfg.anonymous)
    yield
    await app[LIMITER].close()
