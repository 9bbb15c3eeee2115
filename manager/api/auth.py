"""HMAC request signing of seed 004 §2.7, as client 18.12.3 computes it.

String to sign (newline-joined): METHOD, raw path with query, the date header
value as sent, ``host:<Host>``, ``content-type:<type>``, ``x-backendai-version:<v>``,
hex digest of the body — an empty body for versions ≥ v4.20181215, and for older
versions the body itself unless it is multipart. Signing key:
HMAC(HMAC(secret, UTC date as %Y%m%d), host). Never log secrets or signatures.

Strict mode (``manager.api.strict``) replaces the body-hash line by the tag, nonce and
signed body digest; a keypair with ``strict_signing`` accepts nothing else. The Host
header was checked against the served hosts before (``manager.api.hosts``).
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from dateutil import parser as dateparser

from common.errors import AuthenticationFailed, Forbidden, StrictSigningRequired
from manager.api.console import authenticate_console, is_console_route, uses_console_session
from manager.api.keys import CONFIG, KEYPAIRS
from manager.api.ratelimit import limit_keypair
from manager.api.strict import NONCES, STRICT_TAG, StrictHeaders, strict_headers, verify_body
from manager.api.version import check_version_header, is_public
from manager.atlas.paths import is_atlas_path
from manager.services.keypairs import KeypairInfo

MAX_SKEW = timedelta(minutes=15)
NONCE_TTL = int(2 * MAX_SKEW.total_seconds())  # a date is accepted from d-15 min to d+15 min
_DUMMY_SECRET = secrets.token_urlsafe(30)
EMPTY_BODY_SINCE = "v4.20181215"
HASHES = frozenset({"sha256", "sha384", "sha512"})
KEYPAIR = web.RequestKey("kraken.keypair", KeypairInfo)  # the authenticated caller

_AUTH = re.compile(
    r"^BackendAI\s+signMethod=HMAC-(?P<hash>[A-Za-z0-9]+)\s*,\s*"
    r"credential=(?P<key>[^:\s]+):(?P<sig>[0-9a-fA-F]+)\s*$")


@dataclass(frozen=True, slots=True)
class SignedParts:
    """The request fields covered by the signature."""

    method: str
    path: str
    date: str
    host: str
    content_type: str
    version: str
    body: bytes
    strict: StrictHeaders | None = None  # strict mode: nonce and signed body digest


def parse_authorization(header: str) -> tuple[str, str, str]:
    """(hash name, access key, signature) or AuthenticationFailed."""
    m = _AUTH.match(header.strip())
    if m is None:
        raise AuthenticationFailed("malformed Authorization header")
    hash_type = m.group("hash").lower()
    if hash_type not in HASHES:
        raise AuthenticationFailed(f"unsupported signMethod HMAC-{m.group('hash')}")
    return hash_type, m.group("key"), m.group("sig").lower()


def parse_date(value: str, now: datetime | None = None) -> datetime:
    """The request date in UTC; naive means UTC; outside ±15 min → AuthenticationFailed."""
    try:
        date = dateparser.parse(value)
    except (ValueError, OverflowError):
        raise AuthenticationFailed("unparsable Date header") from None
    if date.tzinfo is None:
        date = date.replace(tzinfo=UTC)
    date = date.astimezone(UTC)
    if abs((now or datetime.now(UTC)) - date) > MAX_SKEW:
        raise AuthenticationFailed("request date is more than 15 minutes off the server clock")
    return date


def string_to_sign(parts: SignedParts, hash_type: str = "sha256") -> bytes:
    head = [parts.method.upper(), parts.path, parts.date, f"host:{parts.host}",
            f"content-type:{parts.content_type.lower()}",
            f"x-backendai-version:{parts.version}"]
    if parts.strict is not None:
        return "\n".join([STRICT_TAG, *head, f"x-kraken-nonce:{parts.strict.nonce}",
                          f"x-kraken-content-sha256:{parts.strict.body_sha256}"]).encode()
    body = b"" if parts.version >= EMPTY_BODY_SINCE else parts.body
    if parts.content_type.startswith("multipart/"):
        body = b""
    return "\n".join([*head, hashlib.new(hash_type, body).hexdigest()]).encode()


def compute_signature(secret_key: str, parts: SignedParts, date: datetime,
                      hash_type: str = "sha256") -> str:
    to_sign = string_to_sign(parts, hash_type)
    key = hmac.new(secret_key.encode(), date.strftime("%Y%m%d").encode(), hash_type).digest()
    key = hmac.new(key, parts.host.encode(), hash_type).digest()
    return hmac.new(key, to_sign, hash_type).hexdigest()


def verify(keypair: KeypairInfo | None, parts: SignedParts, signature: str, date: datetime,
           hash_type: str) -> KeypairInfo:
    """The keypair if it exists, is active and signed ``parts``; else AuthenticationFailed."""
    # an unknown key walks the same path (a throwaway secret), so timing tells nothing
    secret = keypair.secret_key if keypair is not None else _DUMMY_SECRET
    expected = compute_signature(secret, parts, date, hash_type)
    matches = hmac.compare_digest(expected.encode(), signature.encode())
    if keypair is None:
        raise AuthenticationFailed("unknown access key")
    if not matches:
        raise AuthenticationFailed("signature mismatch")
    if not keypair.is_active:
        raise AuthenticationFailed("the keypair is inactive")
    if keypair.strict_signing and parts.strict is None:
        raise StrictSigningRequired("this keypair accepts only strict signing (headers "
                                    "X-Kraken-Nonce and X-Kraken-Content-SHA256; docs/api.md)")
    return keypair


async def _parts(request: web.Request, date_value: str,
                 strict: StrictHeaders | None) -> SignedParts:
    version = request.headers.get("X-BackendAI-Version", "")
    needs_body = strict is None and version < EMPTY_BODY_SINCE and \
        not request.content_type.startswith("multipart/")
    return SignedParts(
        method=request.method, path=request.raw_path, date=date_value,
        host=request.headers.get("Host", ""), content_type=request.content_type.lower(),
        version=version, body=await request.read() if needs_body else b"", strict=strict)


async def authenticate(request: web.Request) -> KeypairInfo:
    header = request.headers.get("Authorization")
    if not header:
        raise AuthenticationFailed("missing Authorization header")
    hash_type, access_key, signature = parse_authorization(header)
    date_value = request.headers.get("X-BackendAI-Date") or request.headers.get("Date")
    if not date_value:
        raise AuthenticationFailed("missing Date or X-BackendAI-Date header")
    date = parse_date(date_value)
    strict = strict_headers(request)
    parts = await _parts(request, date_value, strict)
    keypair = verify(await request.app[KEYPAIRS].get(access_key), parts, signature, date,
                     hash_type)
    if strict is not None:
        await request.app[NONCES].claim(keypair.access_key, strict.nonce)
        await verify_body(request, strict.body_sha256,
                          request.app[CONFIG].api.strict_max_body_bytes)
    return keypair


def _atlas_unsigned(request: web.Request) -> bool:
    """An atlas route without an HMAC signature: it authenticates itself (Bearer token,
    or none for sign-up and sign-in; manager.atlas.identity)."""
    return is_atlas_path(request.path) and not request.headers.get(
        "Authorization", "").lstrip().startswith("BackendAI")


@web.middleware
async def auth_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    if is_public(request) or is_console_route(request) or _atlas_unsigned(request):
        return await handler(request)
    if request.match_info.http_exception is None:
        console = uses_console_session(request)
        if not console and "Authorization" in request.headers:
            check_version_header(request)  # a call without a signature is 401 first
        keypair = await (authenticate_console(request) if console else authenticate(request))
        await limit_keypair(request, keypair)
        request[KEYPAIR] = keypair
    return await handler(request)


def caller(request: web.Request) -> KeypairInfo:
    return request[KEYPAIR]


def admin_caller(request: web.Request) -> KeypairInfo:
    """The caller, who must hold an admin keypair (else 403)."""
    keypair = request[KEYPAIR]
    if not keypair.is_admin:
        raise Forbidden("this route is for admin keypairs")
    return keypair
