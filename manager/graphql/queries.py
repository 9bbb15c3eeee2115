"""The SQL reads behind the admin GraphQL API: small functions, one statement each,
batched by key so loaders can serve a whole page of objects with one round trip.
Records are built ``ROWS_PER_TURN`` rows per event-loop turn (``_rows``), so a read of
thousands of rows never holds the loop (see ``manager.graphql.pacing``)."""
from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from common.status import LIVE_STATUS_VALUES as LIVE
from manager.db.tables import (
    agents,
    images,
    kernels,
    keypair_policies,
    keypairs,
    vfolder_permissions,
    vfolders,
)
from manager.graphql.records import (
    AgentRecord,
    AgentUsage,
    ImageRecord,
    KeypairRecord,
    SessionRecord,
    SlotSummary,
    VFolderRecord,
)

ROWS_PER_TURN = 200


def status_values(status: str | None) -> list[str] | None:
    """``RUNNING`` or ``RUNNING,ERROR`` → upper-cased list; empty / ``ALL`` → None."""
    if not status or status.strip().upper() == "ALL":
        return None
    return [s.strip().upper() for s in status.split(",") if s.strip()]


async def _rows(engine: AsyncEngine, stmt: sa.Executable) -> AsyncIterator[Any]:
    """The rows of ``stmt``, letting the event loop run every ``ROWS_PER_TURN`` rows."""
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
    for i, row in enumerate(rows):
        if i and i % ROWS_PER_TURN == 0:
            await asyncio.sleep(0)
        yield row


# ---- keypairs -----------------------------------------------------------------------

def _keypair_select() -> sa.Select[Any]:
    return sa.select(keypairs, keypair_policies.c.rate_limit,
                     keypair_policies.c.resource_policy).outerjoin(
        keypair_policies, keypair_policies.c.access_key == keypairs.c.access_key)


async def keypairs_by_key(engine: AsyncEngine, keys: Iterable[str]) -> dict[str, KeypairRecord]:
    stmt = _keypair_select().where(keypairs.c.access_key.in_(list(keys)))
    return {r.access_key: KeypairRecord.from_row(r) async for r in _rows(engine, stmt)}


async def list_keypairs(engine: AsyncEngine, user_id: str | None, is_active: bool | None,
                        access_key: str | None = None) -> list[KeypairRecord]:
    stmt = _keypair_select().order_by(keypairs.c.created_at, keypairs.c.access_key)
    if user_id is not None:
        stmt = stmt.where(keypairs.c.user_id == user_id)
    if is_active is not None:
        stmt = stmt.where(keypairs.c.is_active == is_active)
    if access_key is not None:
        stmt = stmt.where(keypairs.c.access_key == access_key)
    return [KeypairRecord.from_row(r) async for r in _rows(engine, stmt)]


async def live_session_counts(engine: AsyncEngine, keys: Iterable[str]) -> dict[str, int]:
    stmt = (sa.select(kernels.c.access_key, sa.func.count())
            .where(kernels.c.access_key.in_(list(keys)), kernels.c.status.in_(LIVE))
            .group_by(kernels.c.access_key))
    return {r[0]: int(r[1]) async for r in _rows(engine, stmt)}


# ---- compute sessions ---------------------------------------------------------------

def _session_select(status: str | None) -> sa.Select[Any]:
    stmt = sa.select(kernels).order_by(kernels.c.created_at, kernels.c.session_name,
                                       kernels.c.id)
    wanted = status_values(status)
    return stmt if wanted is None else stmt.where(kernels.c.status.in_(wanted))


async def list_sessions(engine: AsyncEngine, access_key: str | None,
                        status: str | None) -> list[SessionRecord]:
    stmt = _session_select(status)
    if access_key is not None:
        stmt = stmt.where(kernels.c.access_key == access_key)
    return [SessionRecord.from_row(r) async for r in _rows(engine, stmt)]


async def sessions_by_owner(engine: AsyncEngine, keys: Iterable[tuple[str, str | None]]
                            ) -> dict[tuple[str, str | None], list[SessionRecord]]:
    """(access key, status filter) → sessions; one statement per distinct filter."""
    by_status: dict[str | None, list[str]] = defaultdict(list)
    for key, status in keys:
        by_status[status].append(key)
    out: dict[tuple[str, str | None], list[SessionRecord]] = defaultdict(list)
    for status, owners in by_status.items():
        stmt = _session_select(status).where(kernels.c.access_key.in_(owners))
        async for r in _rows(engine, stmt):
            out[(r.access_key, status)].append(SessionRecord.from_row(r))
    return out


async def sessions_by_id(engine: AsyncEngine, ids: Iterable[uuid.UUID]
                         ) -> dict[uuid.UUID, SessionRecord]:
    stmt = sa.select(kernels).where(kernels.c.id.in_(list(ids)))
    return {r.id: SessionRecord.from_row(r) async for r in _rows(engine, stmt)}


async def find_sessions(engine: AsyncEngine, sess_id: str, access_key: str | None,
                        status: str | None = None) -> list[SessionRecord]:
    """Sessions named ``sess_id`` (token or UUID), live ones first, newest first."""
    where: sa.ColumnElement[bool] = kernels.c.session_name == sess_id
    try:
        where = sa.or_(where, kernels.c.id == uuid.UUID(sess_id))
    except ValueError:
        pass
    live_first = sa.case((kernels.c.status.in_(LIVE), 0), else_=1)
    stmt = sa.select(kernels).where(where).order_by(live_first, kernels.c.created_at.desc())
    if access_key is not None:
        stmt = stmt.where(kernels.c.access_key == access_key)
    if (wanted := status_values(status)) is not None:
        stmt = stmt.where(kernels.c.status.in_(wanted))
    return [SessionRecord.from_row(r) async for r in _rows(engine, stmt)]


# ---- agents and images --------------------------------------------------------------

async def list_agents(engine: AsyncEngine, status: str | None,
                      agent_id: str | None = None) -> list[AgentRecord]:
    stmt = sa.select(agents).order_by(agents.c.id)
    if (wanted := status_values(status)) is not None:
        stmt = stmt.where(agents.c.status.in_(wanted))
    if agent_id is not None:
        stmt = stmt.where(agents.c.id == agent_id)
    return [AgentRecord.from_row(r) async for r in _rows(engine, stmt)]


async def agent_usage(engine: AsyncEngine, ids: Iterable[str]) -> dict[str, AgentUsage]:
    """Slots held and memory used by the live sessions on each agent."""
    stmt = sa.select(kernels.c.agent_id, kernels.c.slots, kernels.c.last_stat).where(
        kernels.c.agent_id.in_(list(ids)), kernels.c.status.in_(LIVE))
    acc: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0, 0.0])
    async for r in _rows(engine, stmt):
        s = SlotSummary.of(r.slots)
        a = acc[r.agent_id]
        a[0] += s.cpu
        a[1] += s.mem
        a[2] += s.gpu
        a[3] += float((r.last_stat or {}).get("mem_cur_bytes") or 0)
        a[4] += 1
    return {k: AgentUsage(SlotSummary(a[0], int(a[1]), a[2]), int(a[3]), int(a[4]))
            for k, a in acc.items()}


async def list_images(engine: AsyncEngine) -> list[ImageRecord]:
    """Images offered by ALIVE agents, one record per reference."""
    stmt = (sa.select(images.c.name, images.c.image_id, images.c.labels, images.c.agent_id)
            .join(agents, agents.c.id == images.c.agent_id)
            .where(agents.c.status == "ALIVE").order_by(images.c.name, images.c.agent_id))
    grouped: dict[str, list[Any]] = defaultdict(list)
    async for r in _rows(engine, stmt):
        grouped[r.name].append(r)
    return [ImageRecord.build(name, rows[0].image_id, dict(rows[0].labels or {}),
                              tuple(r.agent_id for r in rows))
            for name, rows in grouped.items()]


# ---- virtual folders ----------------------------------------------------------------

async def vfolders_by_key(engine: AsyncEngine, keys: Iterable[str]
                          ) -> dict[str, list[VFolderRecord]]:
    """Folders each keypair owns or has been granted, in one statement."""
    wanted = list(keys)
    owned = sa.select(vfolders, vfolders.c.owner.label("viewer")).where(
        vfolders.c.owner.in_(wanted))
    shared = sa.select(vfolders, vfolder_permissions.c.access_key.label("viewer")).join(
        vfolder_permissions, vfolder_permissions.c.vfolder_id == vfolders.c.id).where(
        vfolder_permissions.c.access_key.in_(wanted))
    stmt = sa.union_all(owned, shared).order_by("created_at", "name")
    out: dict[str, list[VFolderRecord]] = defaultdict(list)
    async for r in _rows(engine, stmt):
        out[r.viewer].append(VFolderRecord.from_row(r))
    return out


async def list_vfolders(engine: AsyncEngine) -> list[VFolderRecord]:
    stmt = sa.select(vfolders).order_by(vfolders.c.created_at, vfolders.c.name)
    return [VFolderRecord.from_row(r) async for r in _rows(engine, stmt)]
