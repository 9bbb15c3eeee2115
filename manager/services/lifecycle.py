"""The one place session status changes: checked against common.status, stored with
time and reason in ``kernel_events``, and returned for publishing after commit."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from common.status import SessionStatus, can_transition
from manager.db.tables import kernel_events, kernels

REASON_MAX = 256
# status_info of a PREPARING session whose create call gave up because the agent's
# link dropped: the agent may still create it; reconciliation adopts or fails it
ORPHANED = "agent-link-lost"


@dataclass(frozen=True, slots=True)
class Transition:
    """One stored status change of one session."""

    kernel_id: uuid.UUID
    session_name: str
    access_key: str
    from_status: SessionStatus | None
    to_status: SessionStatus
    reason: str | None
    at: datetime

    def to_event(self) -> dict[str, Any]:
        return {
            "event": "kernel-status",
            "kernelId": str(self.kernel_id),
            "sessionName": self.session_name,
            "accessKey": self.access_key,
            "from": self.from_status.value if self.from_status else None,
            "to": self.to_status.value,
            "reason": self.reason,
            "at": self.at.isoformat(),
        }


def clip_reason(reason: str | None) -> str | None:
    return None if reason is None else reason[:REASON_MAX]


async def record_created(conn: AsyncConnection, values: dict[str, Any]) -> Transition:
    """Insert a new session row in PENDING and its first event."""
    now = datetime.now(UTC)
    row = dict(values, status=SessionStatus.PENDING.value, status_changed=now, created_at=now)
    await conn.execute(sa.insert(kernels).values(**row))
    await conn.execute(sa.insert(kernel_events).values(
        kernel_id=row["id"], from_status=None, to_status=row["status"], reason=None, at=now))
    return Transition(row["id"], row["session_name"], row["access_key"], None,
                      SessionStatus.PENDING, None, now)


async def transition_many(conn: AsyncConnection, where: sa.ColumnElement[bool],
                          new: SessionStatus, reason: str | None,
                          extra: dict[str, Any] | None = None) -> list[Transition]:
    """Move every session matching ``where`` to ``new`` where the rules allow it.

    Rows are locked first; sessions already in ``new`` or in a state from which
    ``new`` is not allowed are left alone, so the call is idempotent.
    """
    rows = (await conn.execute(
        sa.select(kernels.c.id, kernels.c.status, kernels.c.session_name,
                  kernels.c.access_key).where(where).with_for_update()
    )).all()
    moving = [r for r in rows if can_transition(SessionStatus(r.status), new)]
    if not moving:
        return []
    now = datetime.now(UTC)
    reason = clip_reason(reason)
    values: dict[str, Any] = dict(extra or {}, status=new.value, status_info=reason,
                                  status_changed=now)
    if new.is_final:
        values["terminated_at"] = now
    ids = [r.id for r in moving]
    await conn.execute(sa.update(kernels).where(kernels.c.id.in_(ids)).values(**values))
    await conn.execute(sa.insert(kernel_events), [
        {"kernel_id": r.id, "from_status": r.status, "to_status": new.value,
         "reason": reason, "at": now} for r in moving
    ])
    return [Transition(r.id, r.session_name, r.access_key, SessionStatus(r.status), new,
                       reason, now) for r in moving]


async def transition(conn: AsyncConnection, kernel_id: uuid.UUID, new: SessionStatus,
                     reason: str | None, extra: dict[str, Any] | None = None
                     ) -> Transition | None:
    """Move one session; ``None`` when the rules do not allow it from its state."""
    done = await transition_many(conn, kernels.c.id == kernel_id, new, reason, extra)
    return done[0] if done else None


async def mark_orphaned(conn: AsyncConnection, kernel_id: uuid.UUID) -> bool:
    """Note that nobody waits for this PREPARING session's create reply any more
    (not a status change: reconciliation settles it from the agent's report)."""
    result = await conn.execute(sa.update(kernels).where(
        kernels.c.id == kernel_id, kernels.c.status == SessionStatus.PREPARING.value,
    ).values(status_info=ORPHANED).returning(kernels.c.id))
    return result.first() is not None


async def history(conn: AsyncConnection, kernel_id: uuid.UUID) -> list[Transition]:
    """The stored status changes of one session, oldest first."""
    row = (await conn.execute(sa.select(kernels.c.session_name, kernels.c.access_key)
                              .where(kernels.c.id == kernel_id))).first()
    if row is None:
        return []
    events = await conn.execute(sa.select(kernel_events).where(
        kernel_events.c.kernel_id == kernel_id).order_by(kernel_events.c.id))
    return [Transition(kernel_id, row.session_name, row.access_key,
                       SessionStatus(e.from_status) if e.from_status else None,
                       SessionStatus(e.to_status), e.reason, e.at) for e in events]
