"""Strict signing: the v4 signature extended to the body and a single-use nonce.

A request is in strict mode when it carries ``X-Kraken-Nonce``. It must then carry
``X-Kraken-Content-SHA256`` (lowercase hex SHA-256 of the raw body as sent), and its
string to sign is the v4 one with the body-hash line replaced (docs/api.md):

    kraken-strict-v1 / METHOD / path?query / date / host:H / content-type:T /
    x-backendai-version:V / x-kraken-nonce:N / x-kraken-content-sha256:D

The manager checks, in order: the signature over those headers, the nonce (claimed
in Redis with SET NX for twice the clock-skew window, keyed by access key, so every
replica refuses a second use), then the body: read into memory up to
``api.strict_max_body`` bytes, hashed, compared, and handed to the handler from
memory — so a handler never sees a body that does not match what was signed.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
from dataclasses import dataclass

import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.streams import StreamReader
from redis.exceptions import RedisError

from common.errors import (
    AuthenticationFailed,
    BodyDigestMismatch,
    PayloadTooLarge,
    RedisUnavailable,
    ReplayedRequest,
)

NONCE_HEADER = "X-Kraken-Nonce"
DIGEST_HEADER = "X-Kraken-Content-SHA256"
STRICT_TAG = "kraken-strict-v1"
NONCE_PREFIX = "kraken:nonce:"
_NONCE = re.compile(r"^[A-Za-z0-9_-]{22,128}$")  # ≥ 16 random bytes, base64url or hex
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class StrictHeaders:
    nonce: str
    body_sha256: str


def strict_headers(request: web.Request) -> StrictHeaders | None:
    """The strict-mode headers, None for a v4 request; malformed → 401."""
    nonce = request.headers.get(NONCE_HEADER)
    if nonce is None:
        return None
    if not _NONCE.match(nonce):
        raise AuthenticationFailed(f"{NONCE_HEADER} must be 22-128 characters of "
                                   "[A-Za-z0-9_-] (16+ random bytes, base64url or hex)")
    digest = request.headers.get(DIGEST_HEADER, "")
    if not _DIGEST.match(digest):
        raise AuthenticationFailed(f"strict signing needs {DIGEST_HEADER}: the lowercase "
                                   "hex SHA-256 of the request body")
    return StrictHeaders(nonce, digest)


class NonceStore:
    """Single-use nonces shared by every replica through Redis."""

    def __init__(self, client: aioredis.Redis, ttl: int) -> None:
        self._redis = client
        self.ttl = ttl

    async def claim(self, access_key: str, nonce: str) -> None:
        """Record the nonce; ReplayedRequest if it was seen within the window."""
        try:
            fresh = await self._redis.set(f"{NONCE_PREFIX}{access_key}:{nonce}", b"1",
                                          nx=True, ex=self.ttl)
        except (RedisError, OSError):
            raise RedisUnavailable("cannot check the request nonce") from None
        if not fresh:
            raise ReplayedRequest("this nonce was already used; sign every request "
                                  "with a fresh X-Kraken-Nonce")


NONCES = web.AppKey("kraken.nonces", NonceStore)


async def _read_bounded(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"strict signing hashes bodies of at most {limit} bytes "
                              "(api.strict_max_body)")
    data = bytearray()
    async for chunk in request.content.iter_chunked(CHUNK):
        data += chunk
        if len(data) > limit:
            raise PayloadTooLarge(f"strict signing hashes bodies of at most {limit} bytes "
                                  "(api.strict_max_body)")
    return bytes(data)


async def verify_body(request: web.Request, expected: str, limit: int) -> None:
    """Read the whole body (≤ ``limit``), compare its SHA-256 with the signed one, and
    let the handler read it again from memory (``read()``, ``content``, multipart)."""
    body = await _read_bounded(request, limit)
    if not hmac.compare_digest(hashlib.sha256(body).hexdigest(), expected):
        raise BodyDigestMismatch(f"the body does not match {DIGEST_HEADER}")
    # aiohttp has no public way to hand a handler a body already read
    request._read_bytes = body
    if body:
        replay = StreamReader(request.protocol, limit=2**31, loop=asyncio.get_running_loop())
        replay.feed_data(body)
        replay.feed_eof()
        request._payload = replay
