"""The queue in GraphQL (admin): ``queued_sessions``, ``move_queued_session``,
``cancel_queued_session``; ``ComputeSession.queue_position`` is resolved here too."""
from __future__ import annotations

import uuid
from typing import Any

import graphene
from graphene import Boolean, DateTime, Int, List, String
from graphene.types.generic import GenericScalar

from manager.services.queue import QueueEntry, list_queue, queue_position


class QueuedSession(graphene.ObjectType):
    """A PENDING session waiting for room, in placement order."""

    id = graphene.UUID()
    sess_id = String()
    access_key = String()
    scaling_group = String()
    priority = Int()
    queue_position = Int(description="1 = next to be placed in its agent group")
    queued_at = DateTime()
    deadline = DateTime(description="cancelled session-queue-timeout after this; "
                        "null: waits until placed or cancelled")
    slots = GenericScalar()

    @staticmethod
    def from_entry(e: QueueEntry) -> QueuedSession:
        return QueuedSession(id=e.kernel_id, sess_id=e.session_name, access_key=e.access_key,
                             scaling_group=e.group, priority=e.priority,
                             queue_position=e.position, queued_at=e.queued_at,
                             deadline=e.deadline, slots=e.slots)


async def resolve_queued_sessions(_root: Any, info: Any, scaling_group: str | None = None
                                  ) -> list[QueuedSession]:
    async with info.context.engine.connect() as conn:
        return [QueuedSession.from_entry(e) for e in await list_queue(conn, scaling_group)]


async def resolve_queue_position(rec: Any, info: Any) -> int | None:
    if rec.status != "PENDING":
        return None
    async with info.context.engine.connect() as conn:
        return await queue_position(conn, rec.id)


def _kernel_id(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


class MoveQueuedSession(graphene.Mutation):
    """Set a queued session's priority (larger goes first), or put it first."""

    class Arguments:
        id = String(required=True)
        priority = Int()
        to_front = Boolean()

    ok = Boolean()
    msg = String()

    @staticmethod
    async def mutate(_root: Any, info: Any, id: str, priority: int | None = None,  # noqa: A002
                     to_front: bool = False) -> MoveQueuedSession:
        kernel_id = _kernel_id(id)
        if (priority is None) == (not to_front):
            return MoveQueuedSession(ok=False, msg="give exactly one of priority, to_front")
        moved = kernel_id is not None and await info.context.queue.move(
            kernel_id, priority, to_front)
        return MoveQueuedSession(ok=moved, msg="success" if moved else "no such queued session")


class CancelQueuedSession(graphene.Mutation):
    """Cancel a queued session (reason ``cancelled-by-admin``)."""

    class Arguments:
        id = String(required=True)

    ok = Boolean()
    msg = String()

    @staticmethod
    async def mutate(_root: Any, info: Any, id: str) -> CancelQueuedSession:  # noqa: A002
        kernel_id = _kernel_id(id)
        done = kernel_id is not None and await info.context.queue.cancel(kernel_id)
        return CancelQueuedSession(ok=done, msg="success" if done else "no such queued session")


QUEUED_SESSIONS = List(QueuedSession, scaling_group=String(),
                       resolver=resolve_queued_sessions)
