"""The database side of reconciliation: load the sessions one agent report is about,
and apply the actions ``manager.reconcile`` decided (status changes only; the caller
sends the DestroyKernel requests after commit).

Every status change is a compare-and-set on the status the action was decided from,
under the rows' locks (``transition_many``), so two replicas applying the same
report, or a report racing a create or a destroy, change each session at most once.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from common.status import LIVE_STATUS_VALUES as LIVE
from common.status import SessionStatus
from manager.config import LinkConfig, ReconcileConfig
from manager.db.tables import kernels
from manager.reconcile import Action, Limits, SessionView
from manager.replica import live_instances, split_owner
from manager.services.lifecycle import ORPHANED, Transition, transition_many

# states in which a call to the agent is in flight, owned by one replica
CALLED = frozenset({SessionStatus.PREPARING, SessionStatus.RESTARTING,
                    SessionStatus.TERMINATING})


def limits_from(link: LinkConfig, rc: ReconcileConfig) -> Limits:
    """The deadlines, each at least the call it covers plus ``settle``."""
    return Limits(
        settle=rc.settle,
        pending=rc.pending_deadline,
        preparing=max(rc.preparing_deadline, link.create_timeout + rc.settle),
        restarting=max(rc.restarting_deadline, link.create_timeout + rc.settle),
        terminating=max(rc.terminating_deadline, link.request_timeout + rc.settle),
        unknown_extra=link.heartbeat_timeout,
    )


def uuids(ids: Iterable[str]) -> list[uuid.UUID]:
    out = []
    for raw in ids:
        try:
            out.append(uuid.UUID(raw))
        except (ValueError, AttributeError, TypeError):
            continue
    return out


def view_of(row: Any, now: datetime, replicas: set[int] | None = None) -> SessionView:
    """``replicas``: the live replica instances (None: unknown, judge by deadline)."""
    status = SessionStatus(row.status)
    age = (now - row.status_changed).total_seconds()
    reason, owner = split_owner(row.status_info)
    orphaned = status in CALLED and (row.status_info == ORPHANED or (
        owner is not None and replicas is not None and owner not in replicas))
    return SessionView(str(row.id), status, max(age, 0.0), reason, orphaned)


async def load_views(conn: AsyncConnection, agent_id: str, reported: Iterable[str],
                     trust_leases: bool = True) -> dict[str, SessionView]:
    """This agent's live sessions, plus its rows for every reported kernel.

    ``trust_leases``: whether a create owner's missing replica lease proves it dead."""
    held = uuids(reported)
    mine: sa.ColumnElement[bool] = kernels.c.status.in_(LIVE)
    if held:
        mine = sa.or_(mine, kernels.c.id.in_(held))
    now = (await conn.execute(sa.select(sa.func.now()))).scalar_one()
    rows = (await conn.execute(sa.select(
        kernels.c.id, kernels.c.status, kernels.c.status_changed, kernels.c.status_info,
    ).where(kernels.c.agent_id == agent_id, mine))).all()
    replicas = None
    if trust_leases and any(r.status in CALLED for r in rows):
        replicas = await live_instances(conn)
    return {str(r.id): view_of(r, now, replicas) for r in rows}


async def apply_marks(conn: AsyncConnection, agent_id: str | None,
                      actions: Iterable[Action]) -> list[Transition]:
    """Store the status changes among ``actions`` (compare-and-set on from_status)."""
    done: list[Transition] = []
    for action in actions:
        if not action.marks or action.status is None or action.from_status is None:
            continue
        where = sa.and_(kernels.c.id == uuid.UUID(action.kernel_id),
                        kernels.c.status == action.from_status.value)
        if agent_id is not None:
            where = sa.and_(where, kernels.c.agent_id == agent_id)
        done += await transition_many(conn, where, action.status, action.reason)
    return done
