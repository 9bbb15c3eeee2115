"""The agent registry: the ROUTER end of the agent link and what agents tell us.

Agents dial in (CurveZMQ) and ``Join`` with a token. This replica remembers which
link peer each joined agent stands behind — connection state only; everything
durable (agent rows, images, sessions) lives in PostgreSQL. A periodic task marks
agents that stopped heart-beating LOST and their live sessions ERROR.
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from common.codec import Message
from common.errors import ServiceUnavailable
from common.ids import AgentId
from common.link import PeerId, RouterLink
from common.msg_agent import (
    AGENT_PROTOCOL,
    ErrorReply,
    Heartbeat,
    Join,
    JoinAccepted,
    KernelTerminated,
    Rejoin,
)
from common.status import LIVE_STATUSES, AgentStatus, SessionStatus
from manager.config import LinkConfig
from manager.db.tables import agents, images, kernels
from manager.events import EventBus
from manager.services.lifecycle import Transition, transition_many

log = logging.getLogger(__name__)

LIVE = [s.value for s in LIVE_STATUSES]
STARTED = [SessionStatus.RUNNING.value, SessionStatus.RESTARTING.value,
           SessionStatus.TERMINATING.value]
Handler = Callable[[PeerId, Message], Awaitable[Message | None]]


def parse_kernel_ids(ids: list[str]) -> list[uuid.UUID]:
    out = []
    for raw in ids:
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            out.append(uuid.UUID(raw))
    return out


class AgentRegistry:
    """Join / heartbeat / termination handling and requests to agents."""

    def __init__(self, config: LinkConfig, engine: AsyncEngine, events: EventBus,
                 join_token: str, on_gone: Callable[[uuid.UUID], None] | None = None) -> None:
        self.config = config
        self._engine = engine
        self._events = events
        self._token = join_token.encode()
        self._on_gone = on_gone or (lambda _k: None)
        self._peers: dict[AgentId, PeerId] = {}
        self._agents: dict[PeerId, AgentId] = {}
        self._handlers: dict[type[Message], Handler] = {
            Join: self._on_join, Heartbeat: self._on_heartbeat,
            KernelTerminated: self._on_kernel_terminated,
        }
        self.link: RouterLink | None = None
        self._liveness: asyncio.Task[None] | None = None

    # ---- lifecycle -------------------------------------------------------------------

    def start(self, curve_secret_key: bytes | None, curve_public_key: bytes | None) -> None:
        self.link = RouterLink(AGENT_PROTOCOL, self.config.bind, self.handle,
                               curve_secret_key=curve_secret_key,
                               curve_public_key=curve_public_key)
        self.link.start()
        self._liveness = asyncio.ensure_future(self._liveness_loop())

    async def close(self) -> None:
        if self._liveness is not None:
            self._liveness.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._liveness
        if self.link is not None:
            await self.link.close()

    def is_connected(self, agent_id: str) -> bool:
        return agent_id in self._peers

    async def request(self, agent_id: str, msg: Message, timeout: float) -> Message:
        """Send a request to an agent through this replica's connection to it."""
        peer = self._peers.get(AgentId(agent_id))
        if peer is None or self.link is None:
            raise ServiceUnavailable(f"agent {agent_id} is not connected to this manager")
        try:
            return await self.link.request(peer, msg, timeout)
        except ConnectionError:
            raise ServiceUnavailable(
                f"agent {agent_id} is unreachable right now (restarting?); retry shortly"
            ) from None

    # ---- incoming --------------------------------------------------------------------

    async def handle(self, peer: PeerId, msg: Message) -> Message | None:
        handler = self._handlers.get(type(msg))
        if handler is None:
            return ErrorReply(error_type="protocol-error",
                              detail=f"unexpected message {msg.msg_type}")
        if not isinstance(msg, Join) and peer not in self._agents:
            if isinstance(msg, Heartbeat) and self.link is not None:
                with contextlib.suppress(ConnectionError):
                    await self.link.send(peer, Rejoin(), 0)
                return None
            return ErrorReply(error_type="unauthorized", detail="join first")
        return await handler(peer, msg)

    async def _on_join(self, peer: PeerId, msg: Message) -> Message | None:
        assert isinstance(msg, Join)
        if not hmac.compare_digest(str(msg.token).encode(), self._token):
            log.warning("agent %r presented a bad join token; refused", msg.agent_id)
            return ErrorReply(error_type="unauthorized", detail="bad join token")
        agent_id = AgentId(msg.agent_id)
        async with self._engine.begin() as conn:
            await self._upsert_agent(conn, msg)
            await _replace_images(conn, agent_id, msg.images)
            gone, keep = await self._reconcile(conn, agent_id, msg.kernels)
        old = self._peers.get(agent_id)
        if old is not None:
            self._agents.pop(old, None)
        self._peers[agent_id], self._agents[peer] = peer, agent_id
        await self._published(gone)
        log.info("agent %s joined (%d kernels kept, %d vanished)",
                 agent_id, len(keep), len(gone))
        return JoinAccepted(heartbeat_interval=self.config.heartbeat_interval,
                            keep_kernels=keep)

    async def _upsert_agent(self, conn: AsyncConnection, msg: Join) -> None:
        values = {
            "id": msg.agent_id, "status": AgentStatus.ALIVE.value, "region": msg.region,
            "version": msg.version, "available_slots": dict(msg.available_slots),
            "occupied_slots": {}, "last_heartbeat": sa.func.now(), "lost_at": None,
        }
        stmt = pg_insert(agents).values(**values)
        update = {k: stmt.excluded[k] for k in values if k != "id"}
        await conn.execute(stmt.on_conflict_do_update(index_elements=["id"], set_=update))

    async def _reconcile(self, conn: AsyncConnection, agent_id: AgentId,
                         reported: list[str]) -> tuple[list[Transition], list[str]]:
        held = parse_kernel_ids(reported)
        where = sa.and_(kernels.c.agent_id == agent_id, kernels.c.status.in_(STARTED))
        if held:
            where = sa.and_(where, kernels.c.id.not_in(held))
        gone = await transition_many(conn, where, SessionStatus.TERMINATED,
                                     "container-vanished")
        keep: list[str] = []
        if held:
            rows = (await conn.execute(sa.select(kernels.c.id).where(
                kernels.c.agent_id == agent_id, kernels.c.status.in_(LIVE),
                kernels.c.id.in_(held)))).all()
            keep = [str(r.id) for r in rows]
        return gone, keep

    async def _on_heartbeat(self, peer: PeerId, msg: Message) -> Message | None:
        assert isinstance(msg, Heartbeat)
        agent_id = self._agents[peer]
        async with self._engine.begin() as conn:
            await conn.execute(sa.update(agents).where(agents.c.id == agent_id).values(
                status=AgentStatus.ALIVE.value, lost_at=None, last_heartbeat=sa.func.now(),
                available_slots=dict(msg.available_slots),
                occupied_slots=dict(msg.occupied_slots)))
            if msg.images is not None:
                await _replace_images(conn, agent_id, msg.images)
        return None

    async def _on_kernel_terminated(self, peer: PeerId, msg: Message) -> Message | None:
        assert isinstance(msg, KernelTerminated)
        ids = parse_kernel_ids([msg.kernel_id])
        if not ids:
            return None
        new = SessionStatus.ERROR if msg.reason == "oom-killed" else SessionStatus.TERMINATED
        where = sa.and_(kernels.c.id == ids[0], kernels.c.agent_id == self._agents[peer])
        async with self._engine.begin() as conn:
            done = await transition_many(conn, where, new, msg.reason)
        await self._published(done)
        return None

    async def _published(self, done: list[Transition]) -> None:
        for t in done:
            self._on_gone(t.kernel_id)
        await self._events.publish(done)

    # ---- liveness --------------------------------------------------------------------

    async def check_liveness(self) -> list[str]:
        """Mark silent agents LOST and their live sessions ERROR; idempotent SQL."""
        limit = timedelta(seconds=self.config.heartbeat_timeout)
        async with self._engine.begin() as conn:
            lost = (await conn.execute(
                sa.update(agents).where(
                    agents.c.status == AgentStatus.ALIVE.value,
                    agents.c.last_heartbeat < sa.func.now() - limit,
                ).values(status=AgentStatus.LOST.value, lost_at=sa.func.now())
                .returning(agents.c.id))).scalars().all()
            lost_agents = sa.select(agents.c.id).where(
                agents.c.status != AgentStatus.ALIVE.value).scalar_subquery()
            done = await transition_many(
                conn, sa.and_(kernels.c.agent_id.in_(lost_agents),
                              kernels.c.status.in_(LIVE)),
                SessionStatus.ERROR, "agent-lost")
        for agent_id in lost:
            log.warning("agent %s missed its heartbeats; marked LOST", agent_id)
        await self._published(done)
        return list(lost)

    async def _liveness_loop(self) -> None:
        period = min(self.config.heartbeat_interval, self.config.heartbeat_timeout / 3)
        while True:
            await asyncio.sleep(period)
            try:
                await self.check_liveness()
            except Exception:
                log.exception("agent liveness check failed")


async def _replace_images(conn: AsyncConnection, agent_id: str,
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
