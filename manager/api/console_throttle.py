"""Console sign-in throttling, checked BEFORE the secret is compared.

Failures are counted in Redis per access key and per client IP, in a window that
starts at the first failure (``console.window`` seconds; defaults: 5 failures per
key, 20 per IP, 5 minutes). One Lua script checks both counters and, when neither is
full, reserves an attempt on both — atomic, so concurrent guesses cannot overshoot.
A successful sign-in clears the key's counter and gives the IP its attempt back. A
throttled caller gets 429 ``sign-in-throttled`` with ``Retry-After``, whether or not
the secret it sent is right. Redis holds only a hash of the access key.
"""
from __future__ import annotations

import hashlib

import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import RedisError

from common.errors import RedisUnavailable, SignInThrottled
from manager.config import ConsoleConfig

PREFIX = "kraken:signin:"

# KEYS: key counter, IP counter; ARGV: max per key, max per IP, window (s)
_RESERVE_LUA = """
local k = tonumber(redis.call('GET', KEYS[1]) or '0')
local i = tonumber(redis.call('GET', KEYS[2]) or '0')
if k >= tonumber(ARGV[1]) then return {0, redis.call('TTL', KEYS[1])} end
if i >= tonumber(ARGV[2]) then return {0, redis.call('TTL', KEYS[2])} end
for _, key in ipairs(KEYS) do
  redis.call('INCR', key)
  if redis.call('TTL', key) < 0 then redis.call('EXPIRE', key, ARGV[3]) end
end
return {1, 0}
"""


def _keys(access_key: str, ip: str) -> list[str]:
    digest = hashlib.sha256(access_key.encode()).hexdigest()[:32]
    return [f"{PREFIX}ak:{digest}", f"{PREFIX}ip:{ip}"]


class SignInThrottle:
    def __init__(self, client: aioredis.Redis, config: ConsoleConfig) -> None:
        self._redis = client
        self._config = config
        self._reserve = client.register_script(_RESERVE_LUA)

    async def reserve(self, access_key: str, ip: str) -> None:
        """Count one attempt; SignInThrottled when the key or the IP is at its limit."""
        c = self._config
        try:
            ok, ttl = await self._reserve(keys=_keys(access_key, ip), args=[
                c.max_failures_per_key, c.max_failures_per_ip, c.window])
        except (RedisError, OSError):
            raise RedisUnavailable("cannot check sign-in attempts") from None
        if not ok:
            retry = max(int(ttl), 1)
            raise SignInThrottled(f"too many failed sign-ins; retry in {retry} seconds",
                                  retry_after=retry)

    async def succeeded(self, access_key: str, ip: str) -> None:
        """Forget the key's failures and return the IP's reserved attempt."""
        key, by_ip = _keys(access_key, ip)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                pipe.decr(by_ip)
                await pipe.execute()
        except (RedisError, OSError):
            pass  # the counters expire on their own


SIGNIN = web.AppKey("kraken.signin_throttle", SignInThrottle)
