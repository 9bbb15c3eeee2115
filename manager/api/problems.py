"""The one place errors become RFC 7807 ``application/problem+json`` responses.

KrakenError subclasses map through their own status/slug; aiohttp's own HTTP errors
(unknown route, wrong method, body too large), aiohttp's parse errors of a malformed
request (``HttpProcessingError``: 400, one INFO line) and any unexpected exception
(500, no internals) are turned into the same shape. Also: JSON in and out, fast.
Problems on atlas routes (seed 000) also carry the seed's ``message`` member (the detail).
"""
from __future__ import annotations

import logging
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from common.errors import (
    PROBLEM_TYPE_PREFIX,
    InvalidAPIParameters,
    KrakenError,
    MalformedJSON,
    MethodNotAllowed,
    NotFound,
    RedisUnavailable,
)
from manager.atlas.paths import is_atlas_path
from manager.db.errors import client_data_error
from manager.outage import OutageLog, translate

log = logging.getLogger(__name__)

_OUTAGES = {"database": OutageLog("the database (seen by a request)"),
            "redis": OutageLog("Redis (seen by a request)")}

PROBLEM_CONTENT_TYPE = "application/problem+json"
API_VERSION = "v4.20181215"  # the API version this server speaks; in every problem body


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status,
                        content_type="application/json")


def _problem_body(body: dict[str, Any], message: bool) -> bytes:
    body["version"] = API_VERSION
    if message:  # an error that names its seed message keeps it (manager.atlas.api_jobs)
        body.setdefault("message", body.get("detail") or body.get("title"))
    return orjson.dumps(body)


def problem_response(error: KrakenError, *, message: bool = False) -> web.Response:
    """The problem of ``error``; ``message``: add seed 000's ``message`` member."""
    body = error.to_problem()
    body["status"] = error.status
    resp = web.Response(body=_problem_body(body, message), status=error.status,
                        content_type=PROBLEM_CONTENT_TYPE)
    if isinstance(error.extra.get("retry_after"), int):
        resp.headers["Retry-After"] = str(error.extra["retry_after"])
    return resp


def _http_problem(exc: web.HTTPException, message: bool) -> web.Response:
    if exc.status == 404:
        return problem_response(NotFound("no such API endpoint"), message=message)
    if exc.status == 405:
        return problem_response(MethodNotAllowed("method not allowed on this endpoint"),
                                message=message)
    body = {"type": PROBLEM_TYPE_PREFIX + "http-error", "title": exc.reason,
            "detail": exc.text if exc.text and not exc.text.startswith(str(exc.status))
            else exc.reason, "status": exc.status}
    return web.Response(body=_problem_body(body, message), status=exc.status,
                        content_type=PROBLEM_CONTENT_TYPE)


@web.middleware
async def problem_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    message = is_atlas_path(request.path)
    try:
        return await handler(request)
    except KrakenError as e:
        if e.status >= 500:
            log.warning("%s %s failed: %s", request.method, request.path, e)
        return problem_response(e, message=message)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return _http_problem(e, message)
    except HttpProcessingError as e:  # a malformed request read inside a handler
        log.info("%s %s: malformed request: %s", request.method, request.path, e.message)
        return problem_response(InvalidAPIParameters(f"malformed request: {e.message[:200]}"),
                                message=message)
    except Exception as e:
        if (refused := client_data_error(e)) is not None:
            log.info("%s %s: the database refused a value: %s", request.method,
                     request.path, str(e).splitlines()[0][:200])
            return problem_response(refused, message=message)
        outage = translate(e)
        if outage is None:
            log.exception("unexpected error on %s %s", request.method, request.path)
            return problem_response(KrakenError("an unexpected error occurred"),
                                    message=message)
        _OUTAGES["redis" if isinstance(outage, RedisUnavailable) else "database"].failed(e)
        return problem_response(outage, message=message)


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object; empty body → {}; otherwise MalformedJSON."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise MalformedJSON(f"the request body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise MalformedJSON("the request body must be a JSON object")
    return data
