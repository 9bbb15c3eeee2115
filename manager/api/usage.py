"""Usage records and the event log (seed 003; docs/api.md, docs/admin.md).

Admin routes see every keypair (``access_key`` narrows them); the same routes without
``/admin`` show the caller's own sessions only:

- ``GET /admin/usage``, ``GET /usage``: one record per session (paging: ``limit``,
  ``offset``)
- ``GET /admin/usage/summary``, ``GET /usage/summary``: totals per keypair
- ``GET /admin/events``, ``GET /events``: stored status transitions (paging: ``limit``,
  ``after``; ``session_id`` narrows to one session)

Every route takes ``since`` / ``until`` (ISO 8601; without a zone, UTC).
"""
from __future__ import annotations

import uuid
from datetime import UTC, datetime

from aiohttp import web

from common.errors import InvalidAPIParameters
from manager.api.auth import admin_caller, caller
from manager.api.keys import DB
from manager.api.problems import json_response
from manager.api.version import PREFIXES
from manager.services.usage import (
    MAX_LIMIT,
    Window,
    event_log,
    usage_records,
    usage_summary,
)

DEFAULT_LIMIT = 100


def _time(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidAPIParameters(f"'{name}' must be an ISO 8601 time, such as "
                                   "2026-11-24T09:00:00Z") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _window(request: web.Request) -> Window:
    window = Window(_time(request, "since"), _time(request, "until"))
    if window.since and window.until and window.since >= window.until:
        raise InvalidAPIParameters("'since' must be before 'until'")
    return window


def _int(request: web.Request, name: str, default: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) > high:
        raise InvalidAPIParameters(f"'{name}' must be an integer from 0 to {high}")
    return int(raw)


def _limit(request: web.Request) -> int:
    return max(_int(request, "limit", DEFAULT_LIMIT, MAX_LIMIT), 1)


def _scope(request: web.Request, admin: bool) -> str | None:
    """The keypair whose sessions count: any (admin, unless narrowed) or the caller's."""
    if admin:
        admin_caller(request)
        return request.query.get("access_key") or None
    return caller(request).access_key


def _session(request: web.Request) -> uuid.UUID | None:
    raw = request.query.get("session_id")
    if not raw:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise InvalidAPIParameters("'session_id' must be a session UUID") from None


def _handlers(admin: bool) -> tuple[web.RouteDef, ...]:
    async def records(request: web.Request) -> web.Response:
        scope = _scope(request, admin)
        return json_response(await usage_records(
            request.app[DB], scope, _window(request), _limit(request),
            _int(request, "offset", 0, 2**31)))

    async def summary(request: web.Request) -> web.Response:
        scope = _scope(request, admin)
        return json_response({"keypairs": await usage_summary(request.app[DB], scope,
                                                              _window(request))})

    async def events(request: web.Request) -> web.Response:
        scope = _scope(request, admin)
        return json_response(await event_log(
            request.app[DB], scope, _window(request), _session(request),
            _int(request, "after", 0, 2**62), _limit(request), internal=admin))

    base = "/admin" if admin else ""
    return tuple(route for prefix in PREFIXES for route in (
        web.get(f"{prefix}{base}/usage", records),
        web.get(f"{prefix}{base}/usage/summary", summary),
        web.get(f"{prefix}{base}/events", events)))


def add_routes(app: web.Application) -> None:
    app.router.add_routes(_handlers(admin=True) + _handlers(admin=False))
