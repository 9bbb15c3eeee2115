"""Library errors of PostgreSQL and Redis become 503 problems in one place, and an
outage is logged once, not per request."""
from __future__ import annotations

import logging
from typing import Any

import asyncpg
import pytest
from graphql import GraphQLError
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import exc as sa_exc

from common.errors import DatabaseUnavailable, RedisUnavailable
from manager.graphql.errors import format_error, http_status
from manager.outage import OutageLog, translate


@pytest.mark.parametrize("error", [
    sa_exc.OperationalError("SELECT 1", {}, Exception("connection refused")),
    sa_exc.InterfaceError("SELECT 1", {}, Exception("connection is closed")),
    sa_exc.DBAPIError("SELECT 1", {}, asyncpg.ConnectionDoesNotExistError("gone")),
    asyncpg.CannotConnectNowError("the database system is starting up"),
    ConnectionRefusedError(111, "Connection refused"),
])
def test_database_outages_are_503(error: BaseException) -> None:
    got = translate(error)
    assert isinstance(got, DatabaseUnavailable) and got.status == 503
    assert got.slug == "database-unavailable"


def test_redis_outage_is_503() -> None:
    got = translate(RedisConnectionError("Error 111 connecting"))
    assert isinstance(got, RedisUnavailable) and got.status == 503


@pytest.mark.parametrize("error", [
    ValueError("a bug"), KeyError("x"),
    sa_exc.IntegrityError("INSERT", {}, Exception("duplicate key")),
    sa_exc.ProgrammingError("SELECT", {}, Exception("syntax error")),
])
def test_bugs_stay_bugs(error: BaseException) -> None:
    assert translate(error) is None


def test_an_outage_is_logged_once_and_its_end_once(caplog: Any) -> None:
    caplog.set_level(logging.WARNING)
    outage = OutageLog("the database", every=3600)
    for _ in range(100):
        outage.failed(ConnectionRefusedError("refused"))
    assert outage.down
    outage.ok()
    outage.ok()
    assert not outage.down
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert "unavailable" in messages[0] and "is back" in messages[1]
    assert all(r.exc_info is None for r in caplog.records)


def test_graphql_resolver_outage_is_503() -> None:
    error = GraphQLError("boom", original_error=ConnectionRefusedError("refused"))
    out = format_error(error)
    assert out["extensions"]["code"] == "SERVICE_UNAVAILABLE"
    assert http_status([out]) == 503
