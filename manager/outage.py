"""The one place library errors of PostgreSQL and Redis become Kraken errors.

A database or Redis outage is an operational state, not a bug: requests answer 503
``database-unavailable`` / ``redis-unavailable`` (never 500), and the log says once
that the service went away and once that it came back — no traceback per request.
"""
from __future__ import annotations

import logging
import time

import asyncpg
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import exc as sa_exc

from common.errors import DatabaseUnavailable, KrakenError, RedisUnavailable

log = logging.getLogger(__name__)

_DB_ERRORS: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError,
    sa_exc.TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError, asyncpg.AdminShutdownError, asyncpg.CrashShutdownError,
)
_REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError)


def _is_db_outage(exc: BaseException) -> bool:
    if isinstance(exc, _DB_ERRORS):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        # with asyncpg, ``orig`` is SQLAlchemy's adapter error; the driver's own error
        # (e.g. CannotConnectNowError while PostgreSQL starts up) is its __cause__
        orig = exc.orig
        return (bool(exc.connection_invalidated) or isinstance(orig, _DB_ERRORS)
                or (orig is not None and isinstance(orig.__cause__, _DB_ERRORS)))
    return False


def translate(exc: BaseException) -> KrakenError | None:
    """The 503 a library error stands for, or None when it is not an outage."""
    if isinstance(exc, _REDIS_ERRORS):
        return RedisUnavailable(f"Redis is unreachable ({type(exc).__name__}); retry shortly")
    if _is_db_outage(exc):
        return DatabaseUnavailable(
            f"the database is unreachable ({type(exc).__name__}); retry shortly")
    if isinstance(exc, (ConnectionError, TimeoutError)):  # OSError from a socket
        cause = exc.__cause__ or exc.__context__
        if cause is not None and _is_db_outage(cause):
            return DatabaseUnavailable("the database is unreachable; retry shortly")
        return DatabaseUnavailable(
            f"a backing service is unreachable ({type(exc).__name__}); retry shortly")
    return None


class OutageLog:
    """Log an outage once when it starts (then at most every ``every`` s) and once when
    it ends; ``since`` is when the service last came back (monotonic)."""

    def __init__(self, what: str, every: float = 30.0) -> None:
        self.what = what
        self.every = every
        self.down_since: float | None = None
        self.since = time.monotonic()
        self._logged: float | None = None

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        if self.down_since is None:
            self.down_since = now
        if self._logged is None or now - self._logged >= self.every:
            self._logged = now
            log.warning("%s unavailable: %s: %s", self.what, type(exc).__name__,
                        str(exc).splitlines()[0] if str(exc) else "")

    def ok(self) -> None:
        if self.down_since is not None:
            now = time.monotonic()
            log.warning("%s is back after %.1fs", self.what, now - self.down_since)
            self.down_since, self.since, self._logged = None, now, None
