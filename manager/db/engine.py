"""The async SQLAlchemy engine and the translation of its errors at our boundary."""
from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

CONNECT_TIMEOUT = 5.0
COMMAND_TIMEOUT = 30.0  # a hung (not stopped) server fails queries instead of hanging them


def make_engine(url: str, pool_size: int = 10) -> AsyncEngine:
    """An asyncpg engine; JSONB columns use the default JSON (de)serializer.

    Connections are pinged on checkout and time out fast, so a PostgreSQL restart
    costs failed requests (503 database-unavailable) while it is down, and nothing after.
    """
    return create_async_engine(url, pool_size=pool_size, max_overflow=10,
                               pool_pre_ping=True, pool_timeout=5,
                               connect_args={"timeout": CONNECT_TIMEOUT,
                                             "command_timeout": COMMAND_TIMEOUT})
