"""The PENDING queue: a create that does not fit waits here and is placed when room frees.

A session is *queued* while its status is PENDING and ``queued_at`` is set. Placement
passes (``QueueService.run_pass``) run on any replica, one at a time under the same
PostgreSQL advisory lock as a create's immediate placement, so a slot is never given
twice and a session never placed twice (PENDING → SCHEDULED happens once, on a locked
row). What starts a pass, without a polling tick on the hot path:

- any session's transition to a final state, on any replica (the Redis event bus);
- an agent joining, or coming back after it was lost (``AgentRegistry.on_room``);
- a create that joined the queue, and an admin's reorder;
- a safety pass every ``scheduler.sweep_interval`` seconds (30 by default), which also
  covers an event lost in a Redis outage and expires sessions past their deadline.

The replica that placed a session prepares it (CreateKernel to the agent), whether or
not the create call that queued it still waits, and on whichever replica it waits:
the waiting call follows the session's status (events, re-read from the database) and
answers when it is RUNNING, failed, cancelled, or its ``maxWaitSeconds`` passed (then
the session is CANCELLED ``session-queue-timeout``).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from common.errors import (
    AgentUnavailable,
    KernelCreationCancelled,
    KernelCreationFailed,
    SessionQueueTimeout,
)
from common.ids import AgentId
from common.slots import slot_floats
from common.status import FINAL_STATUSES, LIVE_STATUSES, AgentStatus, SessionStatus
from manager.config import SchedulerConfig
from manager.db.tables import agent_groups, agents, images, kernels
from manager.events import EventBus
from manager.outage import translate
from manager.queueplan import Policy, QueuedSession, plan
from manager.replica import split_owner
from manager.scheduler import AgentSnapshot, PlacementRequest, stricter
from manager.services.lifecycle import ORPHANED, Transition, transition, transition_many

log = logging.getLogger(__name__)

PLACEMENT_LOCK = 0x4B52414B  # pg_advisory_xact_lock key serializing placement
QUEUE_TIMEOUT = "session-queue-timeout"
ADMIN_CANCELLED = "cancelled-by-admin"
DEFAULT_GROUP = "default"
QUEUE_CHANGED = "queue-changed"  # bus event: an admin reordered the queue
MAX_PASS = 10_000  # queued sessions one pass looks at (the oldest, by priority)
POLL_CAP = 5.0  # a waiting create re-reads its row at least this often (events lost)
LIVE = [s.value for s in LIVE_STATUSES]

QUEUED = sa.and_(kernels.c.status == SessionStatus.PENDING.value,
                 kernels.c.queued_at.is_not(None))
QUEUE_ORDER = (kernels.c.queue_priority.desc(), kernels.c.queue_seq)

Prepare = Callable[[uuid.UUID], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class QueueEntry:
    kernel_id: uuid.UUID
    session_name: str
    access_key: str
    group: str
    priority: int
    position: int  # 1 = next in its group (by priority, then arrival)
    queued_at: datetime
    deadline: datetime | None
    slots: dict[str, Any]


async def group_policies(conn: AsyncConnection, config: SchedulerConfig
                         ) -> Callable[[str], Policy]:
    """The placement policy of each agent group (``agent_groups.scheduler``), read once
    per pass; a group without a row gets the configured default."""
    rows = (await conn.execute(sa.select(agent_groups.c.name, agent_groups.c.scheduler))).all()
    known: dict[str, Policy] = {r.name: r.scheduler for r in rows
                                if r.scheduler in ("fifo", "drf")}
    return lambda group: known.get(group, config.policy)


async def enqueue(conn: AsyncConnection, kernel_id: uuid.UUID, wait: float | None) -> None:
    """Put a PENDING session in the queue (deadline: ``wait`` seconds from now, or none)."""
    deadline = (sa.func.now() + sa.func.make_interval(0, 0, 0, 0, 0, 0, wait)
                if wait is not None else None)
    await conn.execute(sa.update(kernels).where(
        kernels.c.id == kernel_id, kernels.c.status == SessionStatus.PENDING.value,
    ).values(queued_at=sa.func.now(), queue_seq=sa.text("nextval('kernels_queue_seq')"),
             queue_deadline=deadline, status_info="queued"))


async def queue_not_empty(conn: AsyncConnection, group: str) -> bool:
    return (await conn.execute(sa.select(sa.exists().where(
        QUEUED, kernels.c.scaling_group == group)))).scalar_one()


async def list_queue(conn: AsyncConnection, group: str | None = None,
                     kernel_id: uuid.UUID | None = None) -> list[QueueEntry]:
    """The queued sessions in placement order, with their 1-based position per group."""
    position = sa.func.row_number().over(partition_by=kernels.c.scaling_group,
                                         order_by=QUEUE_ORDER).label("position")
    inner = sa.select(kernels.c.id, kernels.c.session_name, kernels.c.access_key,
                      kernels.c.scaling_group, kernels.c.queue_priority, kernels.c.queued_at,
                      kernels.c.queue_deadline, kernels.c.slots, kernels.c.queue_seq,
                      position).where(QUEUED)
    if group is not None:
        inner = inner.where(kernels.c.scaling_group == group)
    sub = inner.subquery()
    query = sa.select(sub).order_by(sub.c.scaling_group, sub.c.position)
    if kernel_id is not None:
        query = query.where(sub.c.id == kernel_id)
    return [QueueEntry(r.id, r.session_name, r.access_key, r.scaling_group or DEFAULT_GROUP,
                       r.queue_priority,
                       r.position, r.queued_at, r.queue_deadline, dict(r.slots or {}))
            for r in (await conn.execute(query)).all()]


async def queue_position(conn: AsyncConnection, kernel_id: uuid.UUID) -> int | None:
    found = await list_queue(conn, kernel_id=kernel_id)
    return found[0].position if found else None


class QueueService:
    """Placement passes, waiting creates and admin operations of one replica."""

    def __init__(self, config: SchedulerConfig, engine: AsyncEngine, events: EventBus,
                 is_connected: Callable[[str], bool], prepare: Prepare) -> None:
        self.config = config
        self._engine = engine
        self._events = events
        self._is_connected = is_connected
        self._prepare = prepare
        self._kick = asyncio.Event()
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self._preparing: set[asyncio.Task[None]] = set()
        self.passes = 0  # completed passes (tests and the bench read it)

    # ---- the pass loop ---------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._loop())

    async def close(self) -> None:
        tasks = [t for t in (self._task, *self._preparing) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def waiting(self) -> int:
        """How many sessions have a create call waiting for them on this replica."""
        return len(self._waiters)

    def kick(self) -> None:
        """Ask for a placement pass soon (several kicks before it starts make one pass)."""
        self._kick.set()

    def on_bus_event(self, event: dict[str, Any]) -> None:
        """Every replica's lifecycle events: wake the create waiting on that session, and
        run a pass when a session ended (room freed)."""
        if event.get("event") == QUEUE_CHANGED:
            self.kick()
        if event.get("event") != "kernel-status":
            return
        for waiter in self._waiters.get(str(event.get("kernelId")), ()):
            waiter.set()
        if event.get("to") in FINAL_STATUSES:
            self.kick()

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self.config.sweep_interval)
            self._kick.clear()
            try:
                await self.run_pass()
            except Exception as e:
                if translate(e) is None:
                    log.exception("queue placement pass failed")
                else:
                    log.warning("queue placement pass skipped: %s", type(e).__name__)

    async def run_pass(self) -> list[tuple[uuid.UUID, AgentId]]:
        """Expire overdue queued sessions and place what fits now; the placed sessions
        are prepared in the background by this replica."""
        async with self._engine.begin() as conn:
            await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(PLACEMENT_LOCK)))
            done = await transition_many(conn, sa.and_(
                QUEUED, kernels.c.queue_deadline < sa.func.now()),
                SessionStatus.CANCELLED, QUEUE_TIMEOUT)
            placed = await self._place_queued(conn, done)
        self.passes += 1
        await self._events.publish(done)
        for kernel_id, _ in placed:
            task = asyncio.ensure_future(self._prepare(kernel_id))
            self._preparing.add(task)
            task.add_done_callback(self._preparing.discard)
        return placed

    async def _place_queued(self, conn: AsyncConnection, done: list[Transition]
                            ) -> list[tuple[uuid.UUID, AgentId]]:
        rows = (await conn.execute(sa.select(
            kernels.c.id, kernels.c.access_key, kernels.c.image, kernels.c.slots,
            kernels.c.scaling_group, kernels.c.queue_priority, kernels.c.queue_seq,
        ).where(QUEUED).order_by(*QUEUE_ORDER).limit(MAX_PASS))).all()
        if not rows:
            return []
        queue = [QueuedSession(r.id, r.access_key,
                               PlacementRequest(r.image, slot_floats(r.slots),
                                                r.scaling_group or DEFAULT_GROUP),
                               int(r.queue_seq or 0), r.queue_priority) for r in rows]
        snapshot, held = await cluster_snapshot(conn, self._is_connected)
        policy_of = await group_policies(conn, self.config)
        placed: list[tuple[uuid.UUID, AgentId]] = []
        for q, agent_id in plan(queue, snapshot, policy_of, held):
            kernel_id = uuid.UUID(str(q.key))
            moved = await transition(conn, kernel_id, SessionStatus.SCHEDULED, None,
                                     {"agent_id": agent_id})
            if moved is not None:
                done.append(moved)
                placed.append((kernel_id, agent_id))
        return placed

    # ---- a create waiting for its session --------------------------------------------

    async def wait_running(self, kernel_id: uuid.UUID, max_wait: float,
                           after_placed: float) -> None:
        """Return once the session is RUNNING; raise what the create answers otherwise.

        While queued, waits up to ``max_wait`` seconds, then cancels the session
        (``session-queue-timeout``); once placed, up to ``after_placed`` more for the
        agent's answer.
        """
        key = str(kernel_id)
        woken = asyncio.Event()
        self._waiters[key].add(woken)
        loop = asyncio.get_running_loop()
        queued_until = loop.time() + max_wait
        placed_until: float | None = None
        try:
            while True:
                woken.clear()
                status, info = await self._status(kernel_id)
                if status is SessionStatus.RUNNING:
                    return
                _raise_if_ended(status, info)
                now = loop.time()
                if status is SessionStatus.PENDING:
                    if now >= queued_until:
                        if await self.cancel(kernel_id, QUEUE_TIMEOUT):
                            raise SessionQueueTimeout(f"no room freed within {max_wait:g} s; "
                                                      "the session was cancelled")
                        continue  # placed meanwhile
                    until = queued_until
                else:
                    if placed_until is None:
                        placed_until = now + after_placed
                    if now >= placed_until:
                        raise AgentUnavailable("the agent did not answer in time; the "
                                               "session is being recovered")
                    until = placed_until
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), min(POLL_CAP, until - now))
        finally:
            self._waiters[key].discard(woken)
            if not self._waiters[key]:
                del self._waiters[key]

    async def _status(self, kernel_id: uuid.UUID) -> tuple[SessionStatus, str | None]:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(kernels.c.status, kernels.c.status_info)
                                      .where(kernels.c.id == kernel_id))).one()
        return SessionStatus(row.status), row.status_info

    # ---- admin operations --------------------------------------------------------------

    async def cancel(self, kernel_id: uuid.UUID, reason: str = ADMIN_CANCELLED) -> bool:
        """Cancel a session while it is queued; False when it is not (any more)."""
        async with self._engine.begin() as conn:
            done = await transition_many(conn, sa.and_(QUEUED, kernels.c.id == kernel_id),
                                         SessionStatus.CANCELLED, reason)
        await self._events.publish(done)
        return bool(done)

    async def move(self, kernel_id: uuid.UUID, priority: int | None = None,
                   to_front: bool = False) -> bool:
        """Set a queued session's priority, or put it ahead of every other queued session
        of its group; False when it is not queued."""
        async with self._engine.begin() as conn:
            row = (await conn.execute(sa.select(kernels.c.scaling_group).where(
                QUEUED, kernels.c.id == kernel_id).with_for_update())).first()
            if row is None:
                return False
            if to_front:
                top = (await conn.execute(sa.select(sa.func.max(kernels.c.queue_priority))
                       .where(QUEUED, kernels.c.scaling_group == row.scaling_group,
                              kernels.c.id != kernel_id))).scalar()
                priority = max(int(top or 0) + 1, 1)  # ahead of every other one
            if priority is not None:
                await conn.execute(sa.update(kernels).where(kernels.c.id == kernel_id)
                                   .values(queue_priority=priority))
        self.kick()
        await self._events.announce({"event": QUEUE_CHANGED})  # every replica passes
        return True


def _raise_if_ended(status: SessionStatus, info: str | None) -> None:
    reason, _ = split_owner(info)
    if status is SessionStatus.ERROR:
        raise KernelCreationFailed(reason or "the session failed while being created")
    if status is SessionStatus.CANCELLED and reason == QUEUE_TIMEOUT:
        raise SessionQueueTimeout("no room freed in time; the session was cancelled")
    if status in FINAL_STATUSES or status is SessionStatus.TERMINATING:
        raise KernelCreationCancelled(
            f"the session was {'cancelled' if reason is None else reason} while queued "
            "or being created")
    if status is SessionStatus.PREPARING and reason == ORPHANED:
        raise AgentUnavailable("the agent's link dropped while creating the session; "
                               "it is being recovered")


async def cluster_snapshot(conn: AsyncConnection, is_connected: Callable[[str], bool]
                           ) -> tuple[list[AgentSnapshot],
                                      dict[tuple[str, str], dict[str, float]]]:
    """ALIVE agents this replica can reach, with their images and occupancy (the larger
    of the sum over live sessions and the agent's report), and what each keypair's live
    sessions hold per group (DRF shares)."""
    agent_rows = (await conn.execute(sa.select(
        agents.c.id, agents.c.available_slots, agents.c.occupied_slots, agents.c.scaling_group,
    ).where(agents.c.status == AgentStatus.ALIVE.value))).all()
    reachable = {r.id: r for r in agent_rows if is_connected(r.id)}
    held_by_agent: dict[str, dict[str, float]] = {i: {} for i in reachable}
    held: dict[tuple[str, str], dict[str, float]] = {}
    used = (await conn.execute(sa.select(
        kernels.c.agent_id, kernels.c.access_key, kernels.c.scaling_group, kernels.c.slots,
    ).where(kernels.c.status.in_(LIVE), kernels.c.agent_id.is_not(None)))).all()
    for row in used:
        slots = slot_floats(row.slots)
        for acc in (held_by_agent.get(row.agent_id),
                    held.setdefault((row.scaling_group or DEFAULT_GROUP, row.access_key),
                                    {})):
            if acc is not None:
                for k, v in slots.items():
                    acc[k] = acc.get(k, 0.0) + v
    names: dict[str, set[str]] = defaultdict(set)
    if reachable:
        for r in (await conn.execute(sa.select(images.c.agent_id, images.c.name).where(
                images.c.agent_id.in_(list(reachable))))).all():
            names[r.agent_id].add(r.name)
    snapshot = []
    for agent_id, agent in reachable.items():
        reported = slot_floats(agent.occupied_slots or {})
        mine = held_by_agent[agent_id]
        occupied = stricter(mine, reported)
        snapshot.append(AgentSnapshot(AgentId(agent_id), slot_floats(agent.available_slots),
                                      occupied, frozenset(names[agent_id]),
                                      agent.scaling_group or DEFAULT_GROUP))
    return snapshot, held

