"""API keypairs: creation, listing and a short-lived in-process lookup cache.

Secret keys are stored sealed by ``manager.secretbox`` (``secret_key_enc``); they are
opened only here, kept in memory at most ``CACHE_TTL`` seconds, and never logged.
"""
from __future__ import annotations

import hmac
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from common.config import ConfigError
from common.errors import InvalidAPIParameters, ServiceUnavailable, SessionAlreadyExists
from common.ids import AccessKey, new_access_key, new_secret_key
from manager.db.tables import kernels, keypair_policies, keypairs, vfolders
from manager.secretbox import SecretBox, SecretBoxError

log = logging.getLogger(__name__)

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
    strict_signing: bool = False  # refuse v4 signatures (docs/api.md, strict mode)

    @classmethod
    def from_row(cls, row: Any, box: SecretBox) -> KeypairInfo:
        return cls(AccessKey(row.access_key), open_secret(box, row), row.user_id,
                   row.is_active, row.is_admin, row.concurrency_limit,
                   getattr(row, "rate_limit", None), bool(row.strict_signing))


def open_secret(box: SecretBox, row: Any) -> str:
    """The plaintext secret of a keypair row (sealed, or plaintext not yet sealed)."""
    if row.secret_key_enc is None:
        return str(row.secret_key)
    try:
        return box.open(row.access_key, row.secret_key_enc)
    except SecretBoxError as e:
        log.error("cannot open the secret key of %s: %s", row.access_key, e)
        raise ServiceUnavailable("the keypair's secret cannot be read (secrets key "
                                 "mismatch); see the manager log") from None


class KeypairStore:
    """Looks keypairs up with a ≤ 2 s in-process cache (auth is on every request)."""

    def __init__(self, engine: AsyncEngine, box: SecretBox, ttl: float = CACHE_TTL) -> None:
        self._engine = engine
        self.box = box
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
        info = KeypairInfo.from_row(row, self.box) if row is not None else None
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[access_key] = (now + self._ttl, info)
        return info


async def create_keypair(engine: AsyncEngine, *, box: SecretBox, user_id: str,
                         is_admin: bool = False, access_key: str | None = None,
                         secret_key: str | None = None, concurrency_limit: int = 5,
                         is_active: bool = True, strict_signing: bool = False,
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
    key = access_key or new_access_key()
    values = {
        "access_key": key, "secret_key": None,
        "secret_key_enc": box.seal(key, secret_key or new_secret_key()),
        "user_id": user_id, "is_admin": is_admin, "is_active": is_active,
        "concurrency_limit": concurrency_limit, "strict_signing": strict_signing,
    }
    if conn is None:
        async with engine.begin() as own:
            row, inserted = await _insert(own, values)
    else:
        row, inserted = await _insert(conn, values)
    info = KeypairInfo.from_row(row, box)
    if not inserted and (secret_key is None or not hmac.compare_digest(
            info.secret_key.encode(), secret_key.encode())):
        raise SessionAlreadyExists(
            f"access key {values['access_key']} exists with a different secret key")
    return info


async def _insert(conn: AsyncConnection, values: dict[str, Any]) -> tuple[Any, bool]:
    stmt = pg_insert(keypairs).values(**values).on_conflict_do_nothing(
        index_elements=["access_key"])
    inserted = bool((await conn.execute(stmt)).rowcount)
    row = (await conn.execute(sa.select(keypairs).where(
        keypairs.c.access_key == values["access_key"]))).one()
    return row, inserted


async def retire_keypair(conn: AsyncConnection, access_key: str) -> bool:
    """Delete a keypair in ``conn``'s transaction (its policy and folder shares go with
    it); one that sessions' history or folders still name is deactivated instead, so
    no row and no folder on disk is orphaned. True when it was deleted."""
    used = sa.or_(
        sa.exists().where(kernels.c.access_key == access_key),
        sa.exists().where(vfolders.c.owner == access_key))
    deleted = await conn.execute(sa.delete(keypairs).where(
        keypairs.c.access_key == access_key, ~used))
    if deleted.rowcount:
        return True
    await conn.execute(sa.update(keypairs).where(keypairs.c.access_key == access_key)
                       .values(is_active=False))
    log.info("keypair %s deactivated, not deleted: sessions or folders still name it",
             access_key)
    return False


async def list_keypairs(engine: AsyncEngine) -> list[dict[str, Any]]:
    """Every keypair without its secret."""
    cols = [c for c in keypairs.c if c.name not in ("secret_key", "secret_key_enc")]
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(*cols).order_by(keypairs.c.created_at))).all()
    return [dict(r._mapping) for r in rows]


async def seal_plaintext(engine: AsyncEngine, box: SecretBox) -> int:
    """Seal every keypair secret still stored in plaintext (rows from before migration
    0004); check that sealed rows open with ``box``. Returns how many rows were sealed.
    ConfigError when sealed rows were made with another key."""
    async with engine.begin() as conn:
        other = (await conn.execute(sa.select(keypairs.c.secret_key_enc).where(
            keypairs.c.secret_key_enc.is_not(None),
            ~keypairs.c.secret_key_enc.startswith(f"k1:{box.key_id}:")).limit(1))).first()
        if other is not None:
            found = str(other[0]).split(":")[1] if ":" in str(other[0]) else "?"
            raise ConfigError(f"keypair secrets were encrypted with secrets key {found}, "
                              f"but secrets.key_file holds key {box.key_id}: configure the "
                              "original key file")
        rows = (await conn.execute(sa.select(keypairs.c.access_key, keypairs.c.secret_key)
                                   .where(keypairs.c.secret_key.is_not(None))
                                   .with_for_update())).all()
        for r in rows:
            await conn.execute(sa.update(keypairs).where(
                keypairs.c.access_key == r.access_key).values(
                secret_key=None, secret_key_enc=box.seal(r.access_key, r.secret_key)))
    if rows:
        # the old row versions still hold plaintext until the table is rewritten
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(sa.text("VACUUM FULL keypairs"))
        log.warning("encrypted %d plaintext keypair secret(s) at rest", len(rows))
    return len(rows)
