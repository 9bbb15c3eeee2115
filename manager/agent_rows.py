"""The agents table and what agent messages change in it (SQL only; the registry
decides when). Sessions change only through ``services.lifecycle``."""
from __future__ import annotations

import uuid
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from common.msg_agent import Heartbeat, Join
from common.status import LIVE_STATUS_VALUES as LIVE
from common.status import AgentStatus, SessionStatus
from manager.db.tables import agents, images, kernels
from manager.services.lifecycle import Transition, transition_many

# a container that stopped by itself: these reasons are failures, the others an ending
FAILURE_REASONS = frozenset({"oom-killed", "runner-unresponsive"})
JOIN_LOCK = 0x4A4F494E  # pg_advisory_xact_lock(JOIN_LOCK, hashtext(agent id)): one join at a time


def instance_of(msg: Join) -> str:
    """The Join's instance id as stored (a string of at most 64 characters)."""
    return str(msg.instance_id)[:64]


async def upsert(conn: AsyncConnection, msg: Join) -> None:
    values = {
        "id": msg.agent_id, "status": AgentStatus.ALIVE.value, "region": msg.region,
        "version": msg.version, "available_slots": dict(msg.available_slots),
        "occupied_slots": {}, "last_heartbeat": sa.func.now(), "lost_at": None,
        "scaling_group": msg.group,
        "instance_id": instance_of(msg),
    }
    stmt = pg_insert(agents).values(**values)
    update = {k: stmt.excluded[k] for k in values if k != "id"}
    await conn.execute(stmt.on_conflict_do_update(index_elements=["id"], set_=update))


async def holder(conn: AsyncConnection, agent_id: str, window: float
                 ) -> tuple[str, float] | None:
    """The instance id holding ``agent_id`` and the seconds since it was last heard,
    when it is ALIVE and was heard within ``window``. Joins of one agent id are
    serialized until commit (an advisory lock: the row may not exist yet)."""
    await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(
        JOIN_LOCK, sa.func.hashtext(agent_id))))
    row = (await conn.execute(
        sa.select(agents.c.instance_id,
                  sa.func.extract("epoch", sa.func.now() - agents.c.last_heartbeat))
        .where(agents.c.id == agent_id, agents.c.status == AgentStatus.ALIVE.value)
        .with_for_update())).one_or_none()
    if row is None or float(row[1]) >= window:
        return None
    return str(row[0]), max(float(row[1]), 0.0)


async def beat(conn: AsyncConnection, agent_id: str, msg: Heartbeat) -> str | None:
    """Store a heartbeat; returns the agent's status before it (None: no row)."""
    was = (await conn.execute(sa.select(agents.c.status).where(agents.c.id == agent_id)
                              .with_for_update())).scalar_one_or_none()
    if was is None:
        return None
    await conn.execute(sa.update(agents).where(agents.c.id == agent_id).values(
        status=AgentStatus.ALIVE.value, lost_at=None, last_heartbeat=sa.func.now(),
        available_slots=dict(msg.available_slots), occupied_slots=dict(msg.occupied_slots)))
    if msg.images is not None:
        await replace_images(conn, agent_id, msg.images)
    return str(was)


async def kernel_ended(conn: AsyncConnection, agent_id: str, kernel_id: uuid.UUID,
                       reason: str) -> list[Transition]:
    """A container stopped by itself (KernelTerminated)."""
    where = sa.and_(kernels.c.id == kernel_id, kernels.c.agent_id == agent_id)
    new = SessionStatus.ERROR if reason in FAILURE_REASONS else SessionStatus.TERMINATED
    done = await transition_many(conn, where, new, reason)
    if not done:  # PREPARING cannot end TERMINATED: the create failed
        done = await transition_many(conn, sa.and_(
            where, kernels.c.status == SessionStatus.PREPARING.value),
            SessionStatus.ERROR, reason)
    return done


async def mark_lost(conn: AsyncConnection, timeout: float, heard: list[str]) -> list[str]:
    """ALIVE agents whose last stored heartbeat is older than ``timeout`` and that
    this replica does not hear itself → LOST. Their sessions are left alone."""
    where = [agents.c.status == AgentStatus.ALIVE.value,
             agents.c.last_heartbeat < sa.func.now() - timedelta(seconds=timeout)]
    if heard:
        where.append(agents.c.id.not_in(heard))
    rows = await conn.execute(sa.update(agents).where(*where).values(
        status=AgentStatus.LOST.value, lost_at=sa.func.now()).returning(agents.c.id))
    return [str(r) for r in rows.scalars().all()]


async def expire_lost(conn: AsyncConnection, grace: float, heard: list[str]
                      ) -> list[Transition]:
    """Live sessions of agents LOST for longer than ``grace`` → ERROR agent-lost."""
    where = [agents.c.status == AgentStatus.LOST.value,
             agents.c.lost_at < sa.func.now() - timedelta(seconds=grace)]
    if heard:
        where.append(agents.c.id.not_in(heard))
    expired = sa.select(agents.c.id).where(*where).scalar_subquery()
    return await transition_many(
        conn, sa.and_(kernels.c.agent_id.in_(expired), kernels.c.status.in_(LIVE)),
        SessionStatus.ERROR, "agent-lost")


async def replace_images(conn: AsyncConnection, agent_id: str,
                         reported: list[dict[str, object]]) -> None:
    await conn.execute(sa.delete(images).where(images.c.agent_id == agent_id))
    rows = []
    for item in reported:
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or not name:
            continue
        labels = item.get("labels")
        rows.append({"name": name, "agent_id": agent_id, "image_id": str(item.get("id") or ""),
                     "labels": labels if isinstance(labels, dict) else {}})
    unique = list({r["name"]: r for r in rows}.values())
    if unique:
        await conn.execute(sa.insert(images), unique)
