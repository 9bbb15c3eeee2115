"""Migration 0006 (nodes-accounting): an agent row from before it gets an empty instance
id (what an agent without ``instance_id`` sends); downgrading removes the column."""
from __future__ import annotations

import os

import asyncpg
import sqlalchemy as sa
from alembic import command

from manager.db.engine import make_engine
from manager.db.migrate import alembic_config, upgrade_head
from tests.integration.manager.conftest import PG_URL


async def test_upgrade_keeps_agents_and_downgrade_drops_the_column() -> None:
    name = f"kraken_test_mig5_{os.urandom(4).hex()}"
    admin = await asyncpg.connect(PG_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = PG_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + "/" + name
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "0004"))
            await conn.execute(sa.text("INSERT INTO agents (id, status) VALUES ('old', 'ALIVE')"))
        await upgrade_head(engine)
        async with engine.connect() as conn:
            assert (await conn.execute(sa.text(
                "SELECT instance_id FROM agents WHERE id = 'old'"))).scalar_one() == ""
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "0004"))
        async with engine.connect() as conn:
            columns = (await conn.execute(sa.text(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = 'agents'"))).scalars().all()
            assert "instance_id" not in columns and "status" in columns
    finally:
        await engine.dispose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
