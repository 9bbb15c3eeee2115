"""API version routes and the ``/vN`` prefix rule (only v4 is served)."""
from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from common.errors import InvalidAPIParameters, UnsupportedAPIVersion
from manager.api.problems import API_VERSION, json_response

MAJOR = 4  # client 18.12.3 picks its REST mode by comparing to API_VERSION
PREFIXES = ("", f"/v{MAJOR}")
_PREFIX = re.compile(r"^/v(\d+)(?:/|$)")
_HEADER = re.compile(r"^v(\d+)\.(\d{8})$")


async def get_version(request: web.Request) -> web.Response:
    return json_response({"version": API_VERSION})


@web.middleware
async def version_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    m = _PREFIX.match(request.path)
    if m is not None and int(m.group(1)) != MAJOR:
        raise UnsupportedAPIVersion(
            f"API major version v{m.group(1)} is not supported; use v{MAJOR} or no prefix")
    return await handler(request)


def check_version_header(request: web.Request) -> None:
    """``X-BackendAI-Version`` on authenticated calls (seed 004 §2.6.6): missing or
    malformed → 400; a major version other than ours → 404."""
    value = request.headers.get("X-BackendAI-Version")
    if not value:
        raise InvalidAPIParameters("the X-BackendAI-Version header is required "
                                   f"(e.g. {API_VERSION})")
    m = _HEADER.match(value.strip())
    if m is None:
        raise InvalidAPIParameters(f"malformed X-BackendAI-Version {value[:40]!r}; "
                                   f"expected the form {API_VERSION}")
    if int(m.group(1)) != MAJOR:
        raise UnsupportedAPIVersion(f"API major version v{m.group(1)} is not supported; "
                                    f"this server speaks {API_VERSION}")


def is_public(request: web.Request) -> bool:
    """Version checks (seed 004 §2.6.6) and the load balancers' ``GET /health``
    (manager.api.health) need no signature."""
    return request.method == "GET" and request.path.rstrip("/") in ("", f"/v{MAJOR}",
                                                                     "/health")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", get_version)
    app.router.add_get(f"/v{MAJOR}", get_version)
    app.router.add_get(f"/v{MAJOR}/", get_version)
