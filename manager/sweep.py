"""The sweep: every non-final state has a deadline (docs/reconciliation.md).

Once the agents had a heartbeat timeout to (re)join after start-up, and then every
``reconcile.sweep_interval`` seconds, one replica at a time
(a PostgreSQL advisory lock; rows another transaction holds are skipped) moves the
sessions that outlived their state's deadline forward or to a final state with a
reason, by ``manager.reconcile.overdue``, and tells the agent to destroy what it may
still hold. The next heartbeat's reconciliation is the backstop for a destroy that
could not be delivered. RUNNING sessions older than their keypair resource policy's
``max_session_lifetime`` are ended the same way (reason ``lifetime-exceeded``).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from common.status import SessionStatus
from manager.agent_sync import apply_marks, view_of
from manager.db.tables import kernels
from manager.outage import translate
from manager.reconcile import Act, Action, Seen, overdue
from manager.registry import AgentRegistry
from manager.replica import live_instances
from manager.services.lifecycle import Transition
from manager.services.policies import LIFETIME_EXCEEDED, lifetime_overdue

log = logging.getLogger(__name__)

SWEEP_LOCK = 0x4B525357  # pg_try_advisory_xact_lock key: one sweeping replica at a time
WITH_DEADLINE = [s.value for s in (
    SessionStatus.PENDING, SessionStatus.SCHEDULED, SessionStatus.PREPARING,
    SessionStatus.RESTARTING, SessionStatus.TERMINATING)]
BATCH = 500


class Sweeper:
    """Finds and settles sessions stuck past their deadline."""

    def __init__(self, engine: AsyncEngine, registry: AgentRegistry) -> None:
        self._engine = engine
        self._registry = registry
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _seen(self, agent_id: str | None, kernel_id: str) -> Seen | None:
        report = self._registry.report_of(agent_id) if agent_id else None
        if report is None:
            return None
        if kernel_id in report.running:
            return Seen.RUNNING
        return Seen.CREATING if kernel_id in report.creating else Seen.ABSENT

    async def sweep(self) -> list[Transition]:
        """One pass; returns the status changes it made (none if another replica is
        sweeping right now)."""
        limits = self._registry.limits
        shortest = min(limits.pending, limits.preparing, limits.restarting,
                       limits.terminating)
        decided: list[tuple[str | None, Action, float]] = []
        async with self._engine.begin() as conn:
            got = (await conn.execute(sa.select(
                sa.func.pg_try_advisory_xact_lock(SWEEP_LOCK)))).scalar_one()
            if not got:
                return []
            now = (await conn.execute(sa.select(sa.func.now()))).scalar_one()
            rows = (await conn.execute(sa.select(
                kernels.c.id, kernels.c.agent_id, kernels.c.status, kernels.c.status_changed,
                kernels.c.status_info,
            ).where(kernels.c.status.in_(WITH_DEADLINE),
                    # a queued session's deadline is its own (manager/services/queue.py)
                    sa.not_(sa.and_(kernels.c.status == SessionStatus.PENDING.value,
                                    kernels.c.queued_at.is_not(None))),
                    kernels.c.status_changed < sa.func.now() - sa.func.make_interval(
                        0, 0, 0, 0, 0, 0, shortest))
              .order_by(kernels.c.status_changed).limit(BATCH)
              .with_for_update(skip_locked=True))).all()
            done: list[Transition] = []
            replicas = await live_instances(conn) if self._registry.lease.trusted() else None
            for row in rows:
                view = view_of(row, now, replicas)
                action = overdue(view, self._seen(row.agent_id, view.kernel_id), limits)
                if action is not None:
                    decided.append((row.agent_id, action, view.age))
                    done += await apply_marks(conn, row.agent_id, [action])
            for row in (await conn.execute(lifetime_overdue(BATCH))).all():
                action = Action(Act.MARK_AND_DESTROY, str(row.id), SessionStatus.RUNNING,
                                SessionStatus.TERMINATING, LIFETIME_EXCEEDED)
                decided.append((row.agent_id, action, (now - row.created_at).total_seconds()))
                done += await apply_marks(conn, row.agent_id, [action])
        for agent_id, action, age in decided:
            log.warning("sweep: session %s %s for %.0fs: %s → %s (%s)", action.kernel_id,
                        action.from_status, age, action.act, action.status, action.reason)
            if agent_id is not None:
                self._registry.send_destroys(agent_id, [action])
        await self._registry.published(done)
        return done

    async def _loop(self) -> None:
        while True:
            try:
                if self._registry.may_judge():  # agents had time to (re)join and report
                    await self.sweep()
            except Exception as e:
                if translate(e) is None:
                    log.exception("the sweep failed")
                else:
                    self._registry.db.failed(e)
            await asyncio.sleep(self._registry.reconcile_config.sweep_interval)
