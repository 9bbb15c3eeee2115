"""API keypairs: creation, listing and a short-lived in-process lookup cache."""
from __future__ import annotations

import hmac
import time
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from common.errors import InvalidAPIParameters, SessionAlreadyExists
from common.ids import AccessKey, new_access_key, new_secret_key
from manager.db.tables import keypair_policies, keypairs

CACHE_TTL = 2.0


@dataclass(frozen=True, slots=True)
class KeypairInfo:
    """An API keypair; the secret never appears in repr()."""

    access_key: AccessKey
    secret_key: str = field(repr=False)
    user_id: str
    is_active: bool
    is_admin: bool
    concurrency_limit: int
    rate_limit: int | None = None  # requests per window; None: the configured default

    @classmethod
    def from_row(cls, row: Any) -> KeypairInfo:
        return cls(AccessKey(row.access_key), row.secret_key, row.user_id, row.is_active,
                   row.is_admin, row.concurrency_limit, getattr(row, "rate_limit", None))


class KeypairStore:
    """Looks keypairs up with a ≤ 2 s in-process cache (auth is on every request)."""

    def __init__(self, engine: AsyncEngine, ttl: float = CACHE_TTL) -> None:
        self._engine = engine
        self._ttl = ttl
        self._cache: dict[str, tuple[float, KeypairInfo | None]] = {}

    async def get(self, access_key: str) -> KeypairInfo | None:
        now = time.monotonic()
        hit = self._cache.get(access_key)
        if hit is not None and hit[0] > now:
            return hit[1]
        query = sa.select(keypairs, keypair_policies.c.rate_limit).outerjoin(
            keypair_policies, keypair_policies.c.access_key == keypairs.c.access_key
        ).where(keypairs.c.access_key == access_key)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        info = KeypairInfo.from_row(row) if row is not None else None
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[access_key] = (now + self._ttl, info)
        return info


async def create_keypair(engine: AsyncEngine, *, user_id: str, is_admin: bool = False,
                         access_key: str | None = None, secret_key: str | None = None,
                         concurrency_limit: int = 5, is_active: bool = True,
                         conn: AsyncConnection | None = None) -> KeypairInfo:
    """Create a keypair (in ``conn``'s transaction when given); with an explicit access
    key that exists, succeed only if the secret matches (idempotent provisioning),
    else raise SessionAlreadyExists."""
    if not user_id or len(user_id) > 256:
        raise InvalidAPIParameters("user_id must be 1-256 characters")
    if concurrency_limit < 0:
        raise InvalidAPIParameters("concurrency limit must be >= 0")
    if access_key is not None and not (4 <= len(access_key) <= 64 and access_key.isalnum()):
        raise InvalidAPIParameters("access key must be 4-64 alphanumeric characters")
    if secret_key is not None and not (8 <= len(secret_key) <= 128):
        raise InvalidAPIParameters("secret key must be 8-128 characters")
    values = {
        "access_key": access_key or new_access_key(),
        "secret_key": secret_key or new_secret_key(),
        "user_id": user_id, "is_admin": is_admin, "is_active": is_active,
        "concurrency_limit": concurrency_limit,
    }
    if conn is None:
        async with engine.begin() as own:
            row, inserted = await _insert(own, values)
    else:
        row, inserted = await _insert(conn, values)
    if not inserted and (secret_key is None or not hmac.compare_digest(
            row.secret_key.encode(), secret_key.encode())):
        raise SessionAlreadyExists(
            f"access key {values['access_key']} exists with a different secret key")
    return KeypairInfo.from_row(row)


async def _insert(conn: AsyncConnection, values: dict[str, Any]) -> tuple[Any, bool]:
    stmt = pg_insert(keypairs).values(**values).on_conflict_do_nothing(
        index_elements=["access_key"])
    inserted = bool((await conn.execute(stmt)).rowcount)
    row = (await conn.execute(sa.select(keypairs).where(
        keypairs.c.access_key == values["access_key"]))).one()
    return row, inserted


async def list_keypairs(engine: AsyncEngine) -> list[dict[str, Any]]:
    """Every keypair without its secret."""
    cols = [c for c in keypairs.c if c.name != "secret_key"]
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(*cols).order_by(keypairs.c.created_at))).all()
    return [dict(r._mapping) for r in rows]
