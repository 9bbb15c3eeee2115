"""Library errors caused by client input become 400s at the boundary: aiohttp's
multipart parse errors, and PostgreSQL data exceptions."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from aiohttp.http_exceptions import InvalidHeader, LineTooLong
from aiohttp.multipart import BadContentDispositionParam
from sqlalchemy.exc import DBAPIError

from common.errors import InvalidAPIParameters
from manager.api.multipart import malformed_multipart, part_filename
from manager.db.errors import client_data_error


@pytest.mark.parametrize("error", [
    ValueError("Could not find starting boundary"), AssertionError(),
    InvalidHeader(b"\x00"), LineTooLong("line", "8190"),
    BadContentDispositionParam("filename*=utf-8''%ff"),
])
def test_mgr_multipart_errors_become_400(error: Exception) -> None:
    with pytest.raises(InvalidAPIParameters, match="malformed multipart body"):
        with malformed_multipart():
            raise error


def test_mgr_multipart_other_errors_pass_through() -> None:
    with pytest.raises(KeyError):
        with malformed_multipart():
            raise KeyError("a bug stays a bug")


def test_mgr_part_filename_decodes_and_refuses_nul() -> None:
    assert part_filename(SimpleNamespace(filename="sub%2Fa.c")) == "sub/a.c"  # type: ignore[arg-type]
    assert part_filename(SimpleNamespace(filename=None)) == ""  # type: ignore[arg-type]
    with pytest.raises(InvalidAPIParameters, match="NUL"):
        part_filename(SimpleNamespace(filename="a%00b"))  # type: ignore[arg-type]


def _db_error(sqlstate: str | None) -> DBAPIError:
    return DBAPIError("SELECT 1", {}, SimpleNamespace(sqlstate=sqlstate))  # type: ignore[arg-type]


@pytest.mark.parametrize("state, refused", [
    ("22021", True), ("22003", True), ("22000", True), ("22P02", True),
    ("23505", False), ("40001", False), ("42601", False), (None, False),
])
def test_mgr_database_data_exceptions_are_the_clients(state: str | None, refused: bool) -> None:
    assert (client_data_error(_db_error(state)) is not None) is refused
    assert client_data_error(ValueError("x")) is None
