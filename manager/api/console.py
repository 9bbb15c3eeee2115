"""The browser console: a GraphiQL page for the admin GraphQL API.

Browsers cannot sign requests, so the console signs in once with an access/secret
key pair (``POST /console/login``, secret compared in constant time) and then holds a
short-lived session: an HTTP-only, SameSite=Strict cookie plus a CSRF token
(double submit: a readable cookie the page's JS copies into ``X-Kraken-CSRF``, which
must match the token stored with the session). The cookie is accepted only on the
GraphQL endpoint and on the streaming WebSockets (``/stream/...``, for the browser
terminal: the CSRF token comes as the ``csrf`` query parameter, since a browser cannot
set headers on a WebSocket, and the Origin must be this host); every other route still
needs a signature. See docs/admin.md and docs/api.md.
"""
from __future__ import annotations

import hmac
import logging
import re
from pathlib import Path

from aiohttp import web

from common.errors import AuthenticationFailed, Forbidden
from manager.api.console_sessions import CONSOLE_SESSIONS, ConsoleSession
from manager.api.console_throttle import SIGNIN
from manager.api.keys import KEYPAIRS
from manager.api.problems import json_response, read_json_object
from manager.services.keypairs import KeypairInfo

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
SESSION_COOKIE = "kraken_console"
CSRF_COOKIE = "kraken_csrf"
CSRF_HEADER = "X-Kraken-CSRF"
CSRF_QUERY = "csrf"  # the CSRF token on a streaming WebSocket (browser terminal)
_STREAM_PATH = re.compile(r"^(?:/v\d+)?/stream/")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_DUMMY_SECRET = "x" * 40
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def is_console_route(request: web.Request) -> bool:
    """Console routes authenticate themselves (no HMAC signature)."""
    return request.path == "/console" or request.path.startswith("/console/")


def is_stream_path(path: str) -> bool:
    return _STREAM_PATH.match(path) is not None


def uses_console_session(request: web.Request) -> bool:
    """An unsigned request to the GraphQL endpoint or a stream carrying the cookie."""
    return ("Authorization" not in request.headers and SESSION_COOKIE in request.cookies
            and (request.path.rstrip("/").endswith("/admin/graphql")
                 or is_stream_path(request.path)))


def _check_origin(request: web.Request, required: bool = False) -> None:
    origin = request.headers.get("Origin")
    if origin is None and not required:
        return
    if origin != f"{request.scheme}://{request.host}":
        raise Forbidden("cross-origin console requests are refused")


async def _session(request: web.Request) -> ConsoleSession:
    token = request.cookies.get(SESSION_COOKIE, "")
    session = await request.app[CONSOLE_SESSIONS].get(token) if token else None
    if session is None:
        raise AuthenticationFailed("no console session (expired?); sign in again")
    if request.method not in SAFE_METHODS:
        _check_origin(request)
        session.check_csrf(request.headers.get(CSRF_HEADER))
    elif is_stream_path(request.path):  # a WebSocket: browsers always send Origin
        _check_origin(request, required=True)
        session.check_csrf(request.query.get(CSRF_QUERY))
    return session


async def authenticate_console(request: web.Request) -> KeypairInfo:
    """The keypair behind the console session of ``request`` (CSRF-checked)."""
    session = await _session(request)
    keypair = await request.app[KEYPAIRS].get(session.access_key)
    if keypair is None or not keypair.is_active:
        raise AuthenticationFailed("the keypair of this console session is gone or inactive")
    return keypair


async def _verify_login(request: web.Request) -> KeypairInfo:
    body = await read_json_object(request)
    access_key, secret = body.get("access_key"), body.get("secret_key")
    if not isinstance(access_key, str) or not isinstance(secret, str):
        raise AuthenticationFailed("access_key and secret_key are required")
    ip = request.remote or "unknown"
    throttle = request.app[SIGNIN]
    await throttle.reserve(access_key, ip)  # before the secret is looked at
    keypair = await request.app[KEYPAIRS].get(access_key)
    expected = keypair.secret_key if keypair is not None else _DUMMY_SECRET
    matches = hmac.compare_digest(expected.encode(), secret.encode())
    if keypair is None or not matches or not keypair.is_active:
        log.warning("console sign-in refused for access key %s from %s",
                    access_key[:64], ip)
        raise AuthenticationFailed("wrong access key or secret key")
    await throttle.succeeded(access_key, ip)
    return keypair


def _set_cookies(resp: web.Response, request: web.Request, token: str, csrf: str,
                 ttl: int) -> None:
    common = {"path": "/", "max_age": ttl, "samesite": "Strict", "secure": request.secure}
    resp.set_cookie(SESSION_COOKIE, token, httponly=True, **common)  # type: ignore[arg-type]
    resp.set_cookie(CSRF_COOKIE, csrf, httponly=False, **common)  # type: ignore[arg-type]


async def login(request: web.Request) -> web.Response:
    _check_origin(request)
    keypair = await _verify_login(request)
    store = request.app[CONSOLE_SESSIONS]
    token, session = await store.create(keypair.access_key)
    resp = json_response({"access_key": keypair.access_key, "is_admin": keypair.is_admin,
                          "csrf_token": session.csrf_token, "expires_in": store.ttl})
    _set_cookies(resp, request, token, session.csrf_token, store.ttl)
    resp.headers.update(SECURITY_HEADERS)
    return resp


async def whoami(request: web.Request) -> web.Response:
    keypair = await authenticate_console(request)
    ttl = await request.app[CONSOLE_SESSIONS].ttl_of(request.cookies[SESSION_COOKIE])
    resp = json_response({"access_key": keypair.access_key, "is_admin": keypair.is_admin,
                          "expires_in": ttl})
    resp.headers.update(SECURITY_HEADERS)
    return resp


async def logout(request: web.Request) -> web.Response:
    await _session(request)
    await request.app[CONSOLE_SESSIONS].delete(request.cookies[SESSION_COOKIE])
    resp = web.Response(status=204, headers=SECURITY_HEADERS)
    resp.del_cookie(SESSION_COOKIE, path="/")
    resp.del_cookie(CSRF_COOKIE, path="/")
    return resp


def _html(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="text/html", charset="utf-8",
                        headers=SECURITY_HEADERS)


def add_routes(app: web.Application) -> None:
    page = (STATIC_DIR / "console" / "index.html").read_bytes()
    terminal = (STATIC_DIR / "terminal" / "index.html").read_bytes()

    async def index(_request: web.Request) -> web.Response:
        return _html(page)

    async def terminal_page(_request: web.Request) -> web.Response:
        """The browser terminal (docs/admin.md). Static, holds nothing: its stream is
        authorised by the cookie + ``?csrf=``, or by a signature (``backend.ai proxy``)."""
        return _html(terminal)

    app.router.add_get("/console", index)
    app.router.add_get("/console/", index)
    # the session name is in the path: `backend.ai proxy` drops query strings
    app.router.add_get("/console/sessions/{name}/terminal", terminal_page)
    app.router.add_post("/console/login", login)
    app.router.add_get("/console/session", whoami)
    app.router.add_post("/console/logout", logout)
    app.router.add_static("/console/static/", STATIC_DIR, show_index=False,
                          follow_symlinks=False)
