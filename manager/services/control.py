"""Operating on existing sessions: lookup, info, destroy, restart and the execute path.

A session is named by its clientSessionToken (among live sessions) or its UUID.
Only the owner or an admin keypair sees a session; everyone else gets 404.
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from common.codec import Message
from common.console import cap_console, data_size, merge_dropped
from common.errors import AgentUnavailable, KernelNotFound, KrakenError, ServiceUnavailable
from common.ids import new_run_id
from common.link import expect
from common.msg_agent import (
    Ack,
    CompleteCode,
    CompletionResult,
    DestroyKernel,
    Execute,
    ExecuteResult,
    GetKernelStats,
    InterruptKernel,
    KernelDestroyed,
    KernelStats,
    RestartKernel,
)
from common.status import LIVE_STATUS_VALUES as LIVE
from common.status import SessionStatus
from manager.config import ManagerConfig
from manager.db.tables import kernels
from manager.events import EventBus
from manager.registry import AgentRegistry
from manager.replica import public_info, with_owner
from manager.services.keypairs import KeypairInfo
from manager.services.lifecycle import transition
from manager.services.queue import queue_position
from manager.services.routes import QueryCounter, Route, RouteCache

log = logging.getLogger(__name__)

R = TypeVar("R", bound=Message)
STATS_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class ExecuteSpec:
    mode: str
    code: str
    run_id: str | None
    options: dict[str, Any] | None


def _capped(body: dict[str, Any], result: ExecuteResult, limit: int) -> dict[str, Any]:
    """One response holds at most ``limit`` console bytes (common.console's rule); what
    was dropped, here or by the agent, is listed under ``dropped``."""
    console: Any = result.console
    dropped: dict[str, int] = {}
    merge_dropped(dropped, result.dropped)
    if not isinstance(console, list) or data_size(console) > limit:
        console, dropped = cap_console(console if isinstance(console, list) else [console],
                                       limit, dropped)
        body["console"] = console
    if dropped:
        body["dropped"] = dropped
    return body


def _ident_clause(ident: str) -> sa.ColumnElement[bool]:
    by_token = sa.and_(kernels.c.session_name == ident, kernels.c.status.in_(LIVE))
    try:
        return sa.or_(kernels.c.id == uuid.UUID(ident), by_token)
    except ValueError:
        return by_token


class SessionControl:
    """Everything done to a session after it was created."""

    def __init__(self, config: ManagerConfig, engine: AsyncEngine, registry: AgentRegistry,
                 events: EventBus, routes: RouteCache, counter: QueryCounter) -> None:
        self.config = config
        self._engine = engine
        self._registry = registry
        self._events = events
        self._routes = routes
        self._counter = counter

    async def find(self, caller: KeypairInfo, ident: str) -> Any:
        """The session row ``ident`` names for ``caller``, or KernelNotFound."""
        where = _ident_clause(ident)
        if not caller.is_admin:
            where = sa.and_(where, kernels.c.access_key == caller.access_key)
        own_first = sa.case((kernels.c.access_key == caller.access_key, 0), else_=1)
        live_first = sa.case((kernels.c.status.in_(LIVE), 0), else_=1)
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(kernels).where(where).order_by(
                own_first, live_first, kernels.c.created_at.desc()).limit(1))).first()
        if row is None:
            raise KernelNotFound(f"no session {ident!r}")
        return row

    async def info(self, caller: KeypairInfo, ident: str) -> dict[str, Any]:
        row = await self.find(caller, ident)
        stats = dict(row.last_stat or {})
        if row.status == SessionStatus.RUNNING and row.agent_id:
            try:
                reply = await self._registry.request(
                    row.agent_id, GetKernelStats(kernel_id=str(row.id)), STATS_TIMEOUT)
                stats = expect(reply, KernelStats).stats or stats
            except KrakenError as e:
                log.info("no live stats for %s: %s", row.id, e)
        created: datetime = row.created_at
        end = row.terminated_at or datetime.now(UTC)
        mem = int((row.slots or {}).get("mem", 0) or 0)
        return {
            "lang": row.lang, "tag": row.tag, "status": row.status,
            "statusInfo": public_info(row.status_info), "created": created.isoformat(),
            "age": int((end - created).total_seconds() * 1000),
            "memoryLimit": mem // 1024,
            "numQueriesExecuted": int(row.num_queries) + self._counter.pending(row.id),
            "cpuCreditUsed": int(stats.get("cpu_used", 0) or 0),
            "queuePosition": await self._queue_position(row),
        }

    async def _queue_position(self, row: Any) -> int | None:
        """1 = next to be placed in its agent group; None when not queued."""
        if row.status != SessionStatus.PENDING or row.queued_at is None:
            return None
        async with self._engine.connect() as conn:
            return await queue_position(conn, row.id)

    def _owned(self, reason: str) -> str:
        """The reason, marked as waited on by this replica (manager/replica.py)."""
        return with_owner(reason, self._registry.lease.instance)

    async def _move(self, kernel_id: uuid.UUID, new: SessionStatus, reason: str | None,
                    extra: dict[str, Any] | None = None) -> bool:
        async with self._engine.begin() as conn:
            done = await transition(conn, kernel_id, new, reason, extra)
        self._routes.forget(kernel_id)
        await self._events.publish([done])
        return done is not None

    async def destroy(self, caller: KeypairInfo, ident: str) -> dict[str, Any]:
        """Destroy a session in any live state; returns the container stats.

        PENDING/SCHEDULED (nothing sent to an agent yet) → CANCELLED. PREPARING,
        RUNNING, RESTARTING → TERMINATING → DestroyKernel (which also cancels a create
        under way; its create call answers 409 kernel-creation-cancelled) →
        TERMINATED user-requested. TERMINATING (an earlier destroy did not finish) →
        DestroyKernel again. When the agent is unreachable the session stays
        TERMINATING (503 agent-unavailable); reconciliation finishes it.
        """
        row = await self.find(caller, ident)
        if row.status not in LIVE:
            raise KernelNotFound(f"session {ident!r} is already {row.status}")
        if row.status in (SessionStatus.PENDING, SessionStatus.SCHEDULED):
            if await self._move(row.id, SessionStatus.CANCELLED, "user-requested"):
                return {}
            row = await self.find(caller, str(row.id))  # it moved on meanwhile
        if row.status != SessionStatus.TERMINATING and not await self._move(
                row.id, SessionStatus.TERMINATING, self._owned("user-requested")):
            row = await self.find(caller, str(row.id))
            raise KernelNotFound(f"session {ident!r} is already {row.status}")
        try:
            reply = await self._registry.request(
                row.agent_id, DestroyKernel(kernel_id=str(row.id), reason="user-requested"),
                self.config.link.request_timeout)
            stats = expect(reply, KernelDestroyed).stats or {}
        except KernelNotFound:
            stats = dict(row.last_stat or {})
        except AgentUnavailable:
            raise  # stays TERMINATING: the agent's next report settles it
        except KrakenError as e:
            await self._move(row.id, SessionStatus.ERROR, f"destroy-failed: {e.detail or e}")
            raise
        await self._move(row.id, SessionStatus.TERMINATED, "user-requested",
                         {"last_stat": stats})
        return stats

    async def restart(self, caller: KeypairInfo, ident: str) -> None:
        row = await self.find(caller, ident)
        if not await self._move(row.id, SessionStatus.RESTARTING,
                                self._owned("user-requested")):
            raise ServiceUnavailable(f"session {ident!r} is {row.status}; cannot restart")
        try:
            reply = await self._registry.request(
                row.agent_id, RestartKernel(kernel_id=str(row.id)),
                self.config.link.create_timeout)
            expect(reply, Ack)
        except AgentUnavailable:
            raise  # stays RESTARTING: the agent's next report settles it
        except KrakenError as e:
            await self._move(row.id, SessionStatus.ERROR, f"restart-failed: {e.detail or e}")
            raise
        await self._move(row.id, SessionStatus.RUNNING, "restarted")

    # ---- the hot path ----------------------------------------------------------------

    async def route(self, caller: KeypairInfo, ident: str) -> Route:
        """Cached: where a RUNNING session lives (one DB read per ≤ 2 s)."""
        route = self._routes.get(caller.access_key, ident)
        if route is not None:
            return route
        row = await self.find(caller, ident)
        if row.status != SessionStatus.RUNNING:
            raise ServiceUnavailable(f"session {ident!r} is {row.status}, not RUNNING")
        route = Route(row.id, row.agent_id, row.access_key)
        self._routes.put(caller.access_key, ident, route)
        return route

    async def ask(self, route: Route, msg: Message, reply_cls: type[R],
                  timeout: float | None = None) -> R:
        """Send ``msg`` to the session's agent and expect a ``reply_cls``; when the agent
        no longer has the kernel, the cached route is dropped so the next call looks
        the session up afresh."""
        reply = await self._registry.request(
            route.agent_id, msg, timeout or self.config.link.request_timeout)
        try:
            return expect(reply, reply_cls)
        except KernelNotFound:
            self._routes.forget(route.kernel_id)
            raise

    async def execute(self, caller: KeypairInfo, ident: str, spec: ExecuteSpec
                      ) -> dict[str, Any]:
        route = await self.route(caller, ident)
        run_id = spec.run_id or new_run_id()
        msg = Execute(kernel_id=str(route.kernel_id), run_id=run_id, mode=spec.mode,
                      code=spec.code, options=spec.options,
                      flush_timeout=self.config.exec.flush_timeout)
        result = await self.ask(route, msg, ExecuteResult, self.config.exec.timeout)
        self._counter.count(route)
        body = {"runId": result.run_id or run_id, "status": result.status,
                "console": result.console, "exitCode": result.exit_code,
                "options": result.options, "files": result.files}
        return _capped(body, result, self.config.exec.max_response)

    async def interrupt(self, caller: KeypairInfo, ident: str) -> None:
        route = await self.route(caller, ident)
        await self.ask(route, InterruptKernel(kernel_id=str(route.kernel_id)), Ack)

    async def complete(self, caller: KeypairInfo, ident: str, code: str,
                       options: dict[str, Any] | None) -> list[str]:
        route = await self.route(caller, ident)
        msg = CompleteCode(kernel_id=str(route.kernel_id), code=code, options=options)
        return list((await self.ask(route, msg, CompletionResult)).items)
