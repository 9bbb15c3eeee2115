"""PostgreSQL refusing a value the client sent is the client's mistake, not ours.

SQLSTATE class 22 ("data exception") is what PostgreSQL and asyncpg answer for a value
that cannot be a parameter of that type: a NUL in a text parameter (22021), a number
out of the column's range (22003, or asyncpg's 22000 "invalid input for query
argument"), a malformed date or UUID text (22007, 22P02). Request input that reaches
a query that way answers 400 instead of 500; every other database error stays a 500.
"""
from __future__ import annotations

from sqlalchemy.exc import DBAPIError

from common.errors import InvalidAPIParameters

DATA_EXCEPTION = "22"


def client_data_error(error: BaseException) -> InvalidAPIParameters | None:
    """The 400 to answer for ``error`` when it is a data exception, else None."""
    if not isinstance(error, DBAPIError):
        return None
    state = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
    if not isinstance(state, str) or not state.startswith(DATA_EXCEPTION):
        return None
    return InvalidAPIParameters("a value in the request is not acceptable here (for "
                                "example a NUL character or a number out of range)")
