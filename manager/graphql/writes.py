"""The SQL writes behind the keypair mutations (§2.17.1), each in one transaction."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from common.errors import InvalidAPIParameters, ServiceUnavailable
from manager.db.tables import kernels, keypair_policies, keypairs
from manager.graphql.cluster_writes import policy_exists
from manager.secretbox import SecretBox
from manager.services.keypairs import KeypairInfo, create_keypair

KEYPAIR_COLUMNS = ("is_active", "is_admin", "concurrency_limit", "strict_signing")
POLICY_COLUMNS = ("rate_limit", "resource_policy")


@dataclass(frozen=True, slots=True)
class KeyPairProps:
    """``KeyPairInput``: None means "leave as is" (or the default on creation)."""

    is_active: bool | None = None
    is_admin: bool | None = None
    resource_policy: str | None = None
    concurrency_limit: int | None = None
    rate_limit: int | None = None
    strict_signing: bool | None = None

    def validate(self) -> KeyPairProps:
        for name in ("concurrency_limit", "rate_limit"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1_000_000:
                raise InvalidAPIParameters(f"{name} must be between 0 and 1000000")
        if self.resource_policy is not None and len(self.resource_policy) > 256:
            raise InvalidAPIParameters("resource_policy is longer than 256 characters")
        return self

    def values(self, names: tuple[str, ...]) -> dict[str, Any]:
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}


async def unknown_policy(engine: AsyncEngine, name: str | None) -> str | None:
    """Why ``resource_policy`` cannot be set to ``name`` (None: it can)."""
    if name is None:
        return None
    async with engine.connect() as conn:
        found = await policy_exists(conn, name)
    return None if found else f"no keypair resource policy named {name!r}"


async def _set_policy(conn: AsyncConnection, access_key: str, props: KeyPairProps) -> None:
    values = props.values(POLICY_COLUMNS)
    if not values:
        return
    if props.resource_policy is not None and not await policy_exists(conn,
                                                                     props.resource_policy):
        # deleted since unknown_policy looked: the transaction is rolled back
        raise InvalidAPIParameters(f"no keypair resource policy named "
                                   f"{props.resource_policy!r}")
    stmt = pg_insert(keypair_policies).values(access_key=access_key, **values)
    await conn.execute(stmt.on_conflict_do_update(index_elements=["access_key"], set_=values))


async def insert_keypair(engine: AsyncEngine, box: SecretBox | None, user_id: str,
                         props: KeyPairProps) -> KeypairInfo:
    """Create a keypair with fresh keys and its policy; returns it (with its secret)."""
    props.validate()
    if box is None:
        raise ServiceUnavailable("keypairs cannot be created without the secrets key")
    async with engine.begin() as conn:
        info = await create_keypair(
            engine, box=box, user_id=user_id, conn=conn,
            is_admin=bool(props.is_admin),
            is_active=props.is_active is not False,
            strict_signing=bool(props.strict_signing),
            concurrency_limit=5 if props.concurrency_limit is None else props.concurrency_limit)
        await _set_policy(conn, info.access_key, props)
    return info


async def update_keypair(engine: AsyncEngine, access_key: str, props: KeyPairProps) -> bool:
    """Change the given properties; False when there is no such keypair."""
    values = props.validate().values(KEYPAIR_COLUMNS)
    async with engine.begin() as conn:
        found = (await conn.execute(sa.select(keypairs.c.access_key).where(
            keypairs.c.access_key == access_key).with_for_update())).first()
        if found is None:
            return False
        if values:
            await conn.execute(sa.update(keypairs).where(
                keypairs.c.access_key == access_key).values(**values))
        await _set_policy(conn, access_key, props)
    return True


async def delete_keypair(engine: AsyncEngine, access_key: str) -> str | None:
    """Delete a keypair; returns why it cannot be deleted, or None when it was."""
    async with engine.begin() as conn:
        found = (await conn.execute(sa.select(keypairs.c.access_key).where(
            keypairs.c.access_key == access_key).with_for_update())).first()
        if found is None:
            return "no such keypair"
        owns = (await conn.execute(sa.select(sa.func.count()).where(
            kernels.c.access_key == access_key))).scalar_one()
        if owns:
            return "the keypair owns compute sessions; deactivate it instead"
        await conn.execute(sa.delete(keypairs).where(keypairs.c.access_key == access_key))
    return None
