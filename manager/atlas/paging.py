"""Cursor paging of "my items" (seed 000 §4.3): an opaque cursor holds the last row's
(createdAt, id), so rows with equal timestamps page without skips or repeats.

The seed says ``desc=true`` means ascending; we follow the parameter's NAME instead
(``desc=true``: newest first, the seed's "most recent data" default), and document it.
"""
from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import datetime

import orjson

from common.errors import BadJobRequest
from manager.atlas.form import parse_bool

DEFAULT_LIMIT, MAX_LIMIT = 10, 50


@dataclass(frozen=True, slots=True)
class Cursor:
    created_at: datetime
    id: uuid.UUID


def encode(cursor: Cursor) -> str:
    raw = orjson.dumps([cursor.created_at.isoformat(), cursor.id.hex])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(text: str) -> Cursor:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        when, ident = orjson.loads(raw)
        created = datetime.fromisoformat(when)
        if created.tzinfo is None:
            raise ValueError("naive")
        return Cursor(created, uuid.UUID(hex=ident))
    except (binascii.Error, ValueError, TypeError, orjson.JSONDecodeError):
        raise BadJobRequest("'cursor' is not a cursor this API returned") from None


@dataclass(frozen=True, slots=True)
class PageQuery:
    newest_first: bool
    cursor: Cursor | None
    limit: int


def page_query(query: dict[str, str]) -> PageQuery:
    order = query.get("orderBy", "createdAt")
    if order != "createdAt":
        raise BadJobRequest("'orderBy' supports only createdAt")
    newest_first = parse_bool(query.get("desc", "true"), "desc")
    try:
        limit = int(query.get("limit", DEFAULT_LIMIT))
    except ValueError:
        raise BadJobRequest("'limit' must be an integer") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise BadJobRequest(f"'limit' must be between 1 and {MAX_LIMIT}")
    raw = query.get("cursor") or None
    return PageQuery(newest_first, decode(raw) if raw and raw != "null" else None, limit)


def offset_query(query: dict[str, str]) -> tuple[int, int]:
    """(limit, offset) of ``GET /history`` (seed 001): limit 1-50 (default 10), offset ≥ 0."""
    try:
        limit, offset = int(query.get("limit", DEFAULT_LIMIT)), int(query.get("offset", 0))
    except ValueError:
        raise BadJobRequest("'limit' and 'offset' must be integers") from None
    if not 1 <= limit <= MAX_LIMIT or offset < 0:
        raise BadJobRequest(f"'limit' must be 1-{MAX_LIMIT} and 'offset' at least 0")
    return limit, offset
