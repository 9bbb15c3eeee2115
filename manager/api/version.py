"""API version routes and the ``/vN`` prefix rule (only v4 is served)."""
from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from common.errors import UnsupportedAPIVersion
from manager.api.problems import json_response

API_VERSION = "v4.20181215"  # client 18.12.3 picks its REST mode by comparing to this
MAJOR = 4
PREFIXES = ("", f"/v{MAJOR}")
_PREFIX = re.compile(r"^/v(\d+)(?:/|$)")


async def get_version(request: web.Request) -> web.Response:
    return json_response({"version": API_VERSION})


@web.middleware
async def version_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    m = _PREFIX.match(request.path)
    if m is not None and int(m.group(1)) != MAJOR:
        raise UnsupportedAPIVersion(
            f"API major version v{m.group(1)} is not supported; use v{MAJOR} or no prefix")
    return await handler(request)


def is_public(request: web.Request) -> bool:
    """Version checks need no signature (seed 004 §2.6.6)."""
    return request.method == "GET" and request.path.rstrip("/") in ("", f"/v{MAJOR}")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", get_version)
    app.router.add_get(f"/v{MAJOR}", get_version)
    app.router.add_get(f"/v{MAJOR}/", get_version)
