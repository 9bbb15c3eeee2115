"""Reading multipart request bodies at the boundary: whatever aiohttp's parser raises
on a malformed body or part header becomes ``InvalidAPIParameters`` (400), never 500.

aiohttp reports malformed input with several unrelated exception types: ``ValueError``
(bad boundary, reading past the end), ``AssertionError`` (a part that does not end
where it should), ``HttpProcessingError`` subclasses (``InvalidHeader`` for a NUL or a
line without a colon, ``LineTooLong``) and, for an undecodable ``filename*``, the
``RuntimeWarning`` subclasses ``BadContentDisposition{Header,Param}`` (raised when
warnings are errors, as under pytest; otherwise the filename just reads as missing).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from urllib.parse import unquote

from aiohttp import BodyPartReader
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.multipart import BadContentDispositionHeader, BadContentDispositionParam

from common.errors import InvalidAPIParameters

MULTIPART_ERRORS: tuple[type[Exception], ...] = (
    ValueError, AssertionError, HttpProcessingError, BadContentDispositionHeader,
    BadContentDispositionParam)
MAX_REASON = 200


def _reason(error: Exception) -> str:
    text = getattr(error, "message", None) or str(error) or type(error).__name__
    return str(text)[:MAX_REASON]


@contextlib.contextmanager
def malformed_multipart() -> Iterator[None]:
    """Translate aiohttp's multipart parse errors raised inside the block."""
    try:
        yield
    except MULTIPART_ERRORS as e:
        raise InvalidAPIParameters(f"malformed multipart body: {_reason(e)}") from None


def part_filename(part: BodyPartReader) -> str:
    """The part's filename, percent-decoded (aiohttp clients, 18.12.3's among them,
    quote it: ``sub%2Fa.c``); ``""`` when it has none. A NUL in it is refused."""
    name = unquote(part.filename or "")
    if "\x00" in name:
        raise InvalidAPIParameters("a part's filename must not contain NUL characters")
    return name
