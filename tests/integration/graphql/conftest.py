"""Fixtures for the admin GraphQL tests: the manager integration harness (fresh
PostgreSQL database, real Redis, real app, fake agent) plus data seeding helpers."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from manager.db.tables import kernels, vfolder_permissions, vfolders
from tests.integration.manager.conftest import (  # noqa: F401  (fixtures)
    Harness,
    harness,
    mgr_config,
    mgr_db_url,
)

GQL = "/admin/graphql"


async def gql(h: Harness, query: str, variables: dict[str, Any] | None = None,
              keys: tuple[str, str] | None = None, path: str = GQL) -> tuple[int, Any]:
    body: dict[str, Any] = {"query": query}
    if variables is not None:
        body["variables"] = variables
    return await h.call("POST", path, body, keys)


async def insert_sessions(h: Harness, access_key: str, count: int, status: str = "RUNNING",
                          prefix: str = "s", agent_id: str | None = None) -> list[uuid.UUID]:
    now = datetime.now(UTC)
    rows = [{"id": uuid.uuid4(), "session_name": f"{prefix}{i}", "access_key": access_key,
             "lang": "python", "image": "kraken/python:latest", "agent_id": agent_id,
             "container_id": f"c{i}", "status": status, "created_at": now,
             "status_changed": now, "slots": {"cpu": "1", "mem": str(2**30)},
             "last_stat": {"cpu_used": 10 + i, "mem_cur_bytes": 3 * 2**30,
                           "mem_max_bytes": 5 * 2**30}}
            for i in range(count)]
    async with h.engine.begin() as conn:
        await conn.execute(sa.insert(kernels), rows)
    return [r["id"] for r in rows]


async def insert_vfolder(h: Harness, owner: str, name: str,
                         shared_with: str | None = None) -> uuid.UUID:
    folder_id = uuid.uuid4()
    async with h.engine.begin() as conn:
        await conn.execute(sa.insert(vfolders).values(id=folder_id, host="local",
                                                      name=name, owner=owner))
        if shared_with is not None:
            await conn.execute(sa.insert(vfolder_permissions).values(
                vfolder_id=folder_id, access_key=shared_with, permission="ro"))
    return folder_id
