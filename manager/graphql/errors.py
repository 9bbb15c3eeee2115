"""GraphQL errors in the GraphQL convention: ``{"message", "locations", "path",
"extensions": {"code"}}``. Kraken errors keep their message; anything unexpected is
logged here and shown as a generic message so no internals leak."""
from __future__ import annotations

import logging
from typing import Any

from graphql import GraphQLError

from common.errors import (
    AuthenticationFailed,
    Forbidden,
    InvalidAPIParameters,
    KrakenError,
    NotFound,
    ServiceUnavailable,
)
from manager.db.errors import client_data_error
from manager.outage import translate

log = logging.getLogger(__name__)

PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
BAD_REQUEST = "BAD_REQUEST"
INTERNAL = "INTERNAL_SERVER_ERROR"

_CODES: tuple[tuple[type[KrakenError], str], ...] = (
    (AuthenticationFailed, "UNAUTHENTICATED"),
    (Forbidden, "FORBIDDEN"),
    (NotFound, "NOT_FOUND"),
    (InvalidAPIParameters, "BAD_USER_INPUT"),
    (ServiceUnavailable, "SERVICE_UNAVAILABLE"),
)
HTTP_STATUS = {PARSE_FAILED: 400, VALIDATION_FAILED: 400, BAD_REQUEST: 400,
               "BAD_USER_INPUT": 400, "UNAUTHENTICATED": 401, "FORBIDDEN": 403,
               "NOT_FOUND": 404, INTERNAL: 500, "SERVICE_UNAVAILABLE": 503}


def code_of(error: KrakenError) -> str:
    for cls, code in _CODES:
        if isinstance(error, cls):
            return code
    return INTERNAL


def format_error(error: GraphQLError, default_code: str = VALIDATION_FAILED) -> dict[str, Any]:
    """One GraphQL error as JSON, with ``extensions.code`` and no internals."""
    out: dict[str, Any] = dict(error.formatted)
    original = error.original_error
    if original is not None and (refused := client_data_error(original)) is not None:
        original = refused
    elif original is not None and not isinstance(original, KrakenError | GraphQLError):
        original = translate(original) or original  # an outage is a 503, not a bug
    if isinstance(original, KrakenError):
        code = code_of(original)
        out["message"] = original.detail or original.title
    elif original is not None and not isinstance(original, GraphQLError):
        log.error("admin GraphQL resolver failed at %s", error.path, exc_info=original)
        code = INTERNAL
        out["message"] = "an internal error occurred"
    else:
        code = (error.extensions or {}).get("code") or default_code
    out["extensions"] = {"code": code}
    return out


def request_error(message: str, code: str = BAD_REQUEST) -> dict[str, Any]:
    return {"message": message, "extensions": {"code": code}}


def http_status(errors: list[dict[str, Any]]) -> int:
    """The HTTP status for a failed result: the first error's code decides."""
    return HTTP_STATUS.get(errors[0]["extensions"]["code"], 400) if errors else 200
