"""Test helpers for agent groups, presets and keypair resource policies: rows written
straight to the tables (the admin API has its own tests), and a reset to what
migration 0005 leaves, since the per-test truncation keeps these tables."""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from manager.db.tables import (
    agent_groups,
    keypair_policies,
    keypair_resource_policies,
    resource_presets,
)

PRESETS = ("large", "micro", "small", "xlarge")


async def reset(engine: Any) -> None:
    async with engine.begin() as conn:
        await conn.execute(sa.delete(keypair_policies))
        await conn.execute(sa.delete(keypair_resource_policies).where(
            keypair_resource_policies.c.name != "default"))
        await conn.execute(sa.update(keypair_resource_policies).values(
            max_concurrent_sessions=0, total_resource_slots={}, max_session_lifetime=0,
            idle_timeout=0, allowed_groups=["default"]))
        await conn.execute(sa.delete(agent_groups).where(agent_groups.c.name != "default"))
        await conn.execute(sa.update(agent_groups).values(is_active=True, scheduler="fifo"))
        await conn.execute(sa.delete(resource_presets).where(
            resource_presets.c.name.not_in(PRESETS)))


async def add_group(engine: Any, name: str, **values: Any) -> None:
    async with engine.begin() as conn:
        await conn.execute(sa.insert(agent_groups).values(name=name, **values))


async def give_policy(engine: Any, access_key: str, name: str, **values: Any) -> None:
    """Create (or overwrite) policy ``name`` and make it ``access_key``'s."""
    async with engine.begin() as conn:
        stmt = pg_insert(keypair_resource_policies).values(name=name, **values)
        await conn.execute(stmt.on_conflict_do_update(index_elements=["name"], set_=values)
                           if values else stmt.on_conflict_do_nothing())
        stmt = pg_insert(keypair_policies).values(access_key=access_key, resource_policy=name)
        await conn.execute(stmt.on_conflict_do_update(
            index_elements=["access_key"], set_={"resource_policy": name}))
