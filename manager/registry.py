"""The agent registry: the ROUTER end of the agent link and what agents tell us.

Agents dial in (CurveZMQ) and ``Join`` with a token; they dial every replica, so each
replica has its own link to every agent. This replica remembers, in memory, which
link peer each agent stands behind, when it last heard from it and what it last
reported; everything durable (agent rows, images, sessions) lives in PostgreSQL.

Liveness is judged from the link (docs/reconciliation.md): heartbeats are recorded
in memory first and stored best-effort; a replica never marks LOST an agent it hears
itself, and judges none until the database has been reachable for a whole heartbeat
timeout. A LOST agent's sessions stay as they are (requests answer 503
agent-unavailable) until ``reconcile.lost_grace`` has passed; an agent that comes back
is reconciled by the rules of ``manager.reconcile`` on every join and heartbeat.

An agent id belongs to one live agent process: a join whose ``instance_id`` differs from
the holder's is refused (``agent-id-conflict``) while the holder was heard within
``takeover_window`` here or, per its agents row, by any replica (docs/protocol.md).
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from common.codec import Message
from common.errors import AgentIdConflict, AgentUnavailable, KrakenError
from common.ids import AgentId
from common.link import PeerId, RouterLink
from common.msg_agent import (
    AGENT_PROTOCOL,
    DestroyKernel,
    ErrorReply,
    Heartbeat,
    Join,
    JoinAccepted,
    KernelTerminated,
    Rejoin,
)
from common.slots import slot_floats
from common.tasks import spawn_into
from manager import agent_rows
from manager.agent_sync import apply_marks, limits_from, load_views, uuids
from manager.config import LinkConfig, ReconcileConfig
from manager.events import EventBus
from manager.outage import OutageLog, translate
from manager.reconcile import Action, Limits, kept, reconcile
from manager.replica import ReplicaLease
from manager.services import policies
from manager.services.lifecycle import Transition

log = logging.getLogger(__name__)

Handler = Callable[[PeerId, Message], Awaitable[Message | None]]


@dataclass(frozen=True, slots=True)
class Report:
    """What an agent last told this replica (monotonic time)."""

    at: float
    running: frozenset[str]
    creating: frozenset[str]


class AgentRegistry:
    """Join / heartbeat / termination handling, liveness and requests to agents."""

    def __init__(self, config: LinkConfig, engine: AsyncEngine, events: EventBus,
                 join_token: str, on_gone: Callable[[uuid.UUID], None] | None = None,
                 reconcile_config: ReconcileConfig | None = None) -> None:
        self.config = config
        self.reconcile_config = reconcile_config or ReconcileConfig()
        self._engine = engine
        self._events = events
        self._token = join_token.encode()
        self._on_gone = on_gone or (lambda _k: None)
        self._peers: dict[AgentId, PeerId] = {}
        self._agents: dict[PeerId, AgentId] = {}
        self._heard: dict[AgentId, float] = {}  # monotonic time of the last message
        self._reports: dict[AgentId, Report] = {}
        self._instances: dict[AgentId, str] = {}  # the Join instance id behind each peer
        # one agent's one-way messages are applied in the order they arrived
        self._order: dict[AgentId, asyncio.Lock] = {}
        self._handlers: dict[type[Message], Handler] = {
            Join: self._on_join, Heartbeat: self._on_heartbeat,
            KernelTerminated: self._on_kernel_terminated,
        }
        self.db = OutageLog("the database (agent registry)")
        self.link: RouterLink | None = None
        self.lease = ReplicaLease(engine)  # tells other replicas this one is alive
        self._tasks: set[asyncio.Task[None]] = set()
        self._liveness: asyncio.Task[None] | None = None
        self._dropped_listeners: list[Callable[[PeerId, str], None]] = []
        self._room_listeners: list[Callable[[], None]] = []
        self._slots_seen: dict[AgentId, tuple[dict[str, float], dict[str, float]]] = {}

    def add_handler(self, cls: type[Message], handler: Handler) -> None:
        """Handle ``cls`` from joined agents (stream messages: manager.streams). A
        handler must not do a database transaction per message."""
        self._handlers[cls] = handler

    def on_peer_dropped(self, listener: Callable[[PeerId, str], None]) -> None:
        """``listener(peer, why)`` when an agent connection is replaced or falls silent."""
        self._dropped_listeners.append(listener)

    def agent_of(self, peer: PeerId) -> AgentId | None:
        """The agent that joined on ``peer`` (None: it has not joined)."""
        return self._agents.get(peer)

    @property
    def engine(self) -> AsyncEngine:
        return self._engine
    def on_room(self, listener: Callable[[], None]) -> None:
        """``listener()`` when an agent joins or comes back (room may have appeared)."""
        self._room_listeners.append(listener)

    def _more_room(self, agent_id: AgentId, available: Mapping[str, Any] | None,
                   occupied: Mapping[str, Any] | None) -> bool:
        """The agent reports more capacity or less occupancy than in its last report."""
        cap, used = slot_floats(available), slot_floats(occupied)
        was = self._slots_seen.get(agent_id)
        self._slots_seen[agent_id] = (cap, used)
        if was is None:
            return False
        grew = any(v > was[0].get(k, 0.0) for k, v in cap.items())
        freed = any(used.get(k, 0.0) < v for k, v in was[1].items())
        return grew or freed

    def _room(self) -> None:
        for listener in self._room_listeners:
            listener()

    def peer_of(self, agent_id: str) -> PeerId | None:
        """The link peer the agent joined from, while this replica hears it."""
        return self._peers.get(AgentId(agent_id)) if self.hears(agent_id) else None

    @property
    def limits(self) -> Limits:
        return limits_from(self.config, self.reconcile_config)

    # ---- lifecycle -------------------------------------------------------------------

    def start(self, curve_secret_key: bytes | None, curve_public_key: bytes | None) -> None:
        self.link = RouterLink(AGENT_PROTOCOL, self.config.bind, self.handle,
                               curve_secret_key=curve_secret_key,
                               curve_public_key=curve_public_key)
        self.link.start()
        self.lease.start()
        self._liveness = asyncio.ensure_future(self._liveness_loop())

    async def close(self) -> None:
        if self._liveness is not None:
            self._liveness.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._liveness
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.link is not None:
            await self.link.close()
        await self.lease.close()

    def spawn(self, coro: Awaitable[None]) -> None:
        spawn_into(self._tasks, coro)

    # ---- what this replica hears -----------------------------------------------------

    def hears(self, agent_id: str) -> bool:
        """This replica heard the agent within the heartbeat timeout."""
        at = self._heard.get(AgentId(agent_id))
        return at is not None and time.monotonic() - at < self.config.heartbeat_timeout

    def is_connected(self, agent_id: str) -> bool:
        """Joined here and heard recently: requests to it can be answered."""
        return AgentId(agent_id) in self._peers and self.hears(agent_id)

    def heard_agents(self) -> list[str]:
        return [a for a in self._heard if self.hears(a)]

    def report_of(self, agent_id: str) -> Report | None:
        """The agent's last report to this replica while it is heard, else None."""
        report = self._reports.get(AgentId(agent_id))
        return report if report is not None and self.hears(agent_id) else None

    def _heard_from(self, agent_id: AgentId, running: list[str], creating: list[str]) -> None:
        now = time.monotonic()
        self._heard[agent_id] = now
        self._reports[agent_id] = Report(now, frozenset(running), frozenset(creating))

    # ---- requests to agents ----------------------------------------------------------

    async def request(self, agent_id: str, msg: Message, timeout: float) -> Message:
        """Send a request through this replica's link; fails fast (503 agent-unavailable)
        when the agent is not connected here, silent, or its connection goes away."""
        peer = self._peers.get(AgentId(agent_id))
        if peer is None or self.link is None:
            raise AgentUnavailable(f"agent {agent_id} is not connected to this manager; "
                                   "retry shortly")
        if not self.hears(agent_id):
            raise AgentUnavailable(f"agent {agent_id} has been silent for more than "
                                   f"{self.config.heartbeat_timeout:g}s; retry shortly")
        try:
            return await self.link.request(peer, msg, timeout)
        except ConnectionError:
            raise AgentUnavailable(
                f"agent {agent_id} is unreachable right now (restarting?); retry shortly"
            ) from None

    def send_destroys(self, agent_id: str, actions: list[Action]) -> None:
        """DestroyKernel for each destroying action, in the background, best-effort."""
        for action in actions:
            if action.destroys:
                self.spawn(self._destroy(agent_id, action.kernel_id,
                                         action.reason or "reconciled"))

    async def _destroy(self, agent_id: str, kernel_id: str, reason: str) -> None:
        log.info("destroying kernel %s on %s (%s)", kernel_id, agent_id, reason)
        try:
            await self.request(agent_id, DestroyKernel(kernel_id=kernel_id, reason=reason),
                               self.config.request_timeout)
        except KrakenError as e:
            log.info("destroy of %s on %s not confirmed: %s", kernel_id, agent_id, e)

    def _drop_peer(self, peer: PeerId, why: str) -> None:
        for listener in self._dropped_listeners:
            listener(peer, why)
        if self.link is not None:
            failed = self.link.fail_peer(peer, lambda: AgentUnavailable(
                f"the agent's connection was {why}; retry shortly"))
            if failed:
                log.warning("failed %d request(s) in flight: agent connection %s",
                            failed, why)

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
        if not isinstance(msg.group, str) or not policies.NAME.fullmatch(msg.group):
            return ErrorReply(error_type="invalid-api-params",
                              detail="the agent group name must be 1-64 of A-Z a-z 0-9 . _ -")
        agent_id = AgentId(msg.agent_id)
        instance = agent_rows.instance_of(msg)
        try:
            self._check_held(agent_id, peer, instance)
            async with self._engine.begin() as conn:
                held = await agent_rows.holder(conn, agent_id, self.takeover_window)
                if held is not None and held[0] != instance:
                    raise self._conflict(agent_id, held[0], held[1])
                await agent_rows.upsert(conn, msg)
                await agent_rows.replace_images(conn, agent_id, msg.images)
                actions, done = await self._reconcile(conn, agent_id, msg.kernels,
                                                      msg.creating)
        except AgentIdConflict as e:
            log.warning("agent %s (instance %r) refused: %s held by instance %r", agent_id,
                        instance, e, e.extra.get("holder"))
            return ErrorReply(error_type=e.slug, detail=str(e))
        except Exception as e:
            if (outage := translate(e)) is None:
                raise
            self.db.failed(e)
            return ErrorReply(error_type=outage.slug, detail=str(outage))
        self.db.ok()
        self._instances[agent_id] = instance
        old = self._peers.get(agent_id)
        if old is not None and old != peer:
            self._agents.pop(old, None)
            self._drop_peer(old, "replaced by a new one")
        self._peers[agent_id], self._agents[peer] = peer, agent_id
        self._heard_from(agent_id, msg.kernels, msg.creating)
        await self.published(done)
        destroy = [a for a in actions if a.destroys and a.kernel_id not in msg.kernels]
        self.send_destroys(agent_id, destroy)  # the agent drops the others itself
        keep = kept(list(msg.kernels) + list(msg.creating), actions)
        log.info("agent %s joined (%d kernels kept, %d actions)", agent_id, len(keep),
                 len(actions))
        self._room()
        return JoinAccepted(heartbeat_interval=self.config.heartbeat_interval,
                            keep_kernels=keep)

    @property
    def takeover_window(self) -> float:
        """An agent id is held while its holder was heard this recently: two missed
        heartbeats (bounded by the heartbeat timeout) free it for another instance."""
        return min(2 * self.config.heartbeat_interval, self.config.heartbeat_timeout)

    def _check_held(self, agent_id: AgentId, peer: PeerId, instance_id: str) -> None:
        """Raise AgentIdConflict when another connection of this replica holds the id
        for another instance and was heard within the takeover window."""
        old = self._peers.get(agent_id)
        held_by = self._instances.get(agent_id, "")
        if old is None or old == peer or held_by == instance_id:
            return
        ago = time.monotonic() - self._heard.get(agent_id, float("-inf"))
        if ago < self.takeover_window:
            raise self._conflict(agent_id, held_by, ago)

    def _conflict(self, agent_id: AgentId, held_by: str, ago: float) -> AgentIdConflict:
        """The refusal; the holder's instance id goes to the manager log only (whoever
        knows it could pass for the holder)."""
        return AgentIdConflict(
            f"This ID has already been registered: agent id {agent_id!r} is held by a live "
            f"agent (heard {ago:.1f}s ago); give each agent its own agent_id (a restarted "
            f"agent is accepted once the old one has been silent for "
            f"{self.takeover_window:g}s)", holder=held_by)

    async def _reconcile(self, conn: AsyncConnection, agent_id: AgentId, running: list[str],
                         creating: list[str]) -> tuple[list[Action], list[Transition]]:
        views = await load_views(conn, agent_id, list(running) + list(creating),
                                 self.lease.trusted())
        actions = reconcile(views, running, creating, self.limits)
        for action in actions:
            log.info("reconcile %s on %s: %s %s→%s (%s)", action.kernel_id, agent_id,
                     action.act, action.from_status, action.status, action.reason)
        return actions, await apply_marks(conn, agent_id, actions)

    async def _on_heartbeat(self, peer: PeerId, msg: Message) -> Message | None:
        assert isinstance(msg, Heartbeat)
        agent_id = self._agents[peer]
        self._heard_from(agent_id, msg.kernels, msg.creating)  # liveness: the link
        async with self._order.setdefault(agent_id, asyncio.Lock()):
            await self._store_heartbeat(agent_id, msg)
        if self._more_room(agent_id, msg.available_slots, msg.occupied_slots):
            self._room()
        return None

    async def _store_heartbeat(self, agent_id: AgentId, msg: Heartbeat) -> None:
        try:
            async with self._engine.begin() as conn:
                was = await agent_rows.beat(conn, agent_id, msg)
                actions, done = await self._reconcile(conn, agent_id, msg.kernels,
                                                      msg.creating)
        except Exception as e:
            if translate(e) is None:
                raise
            self.db.failed(e)
            return
        self.db.ok()
        if was is not None and was != "ALIVE":
            log.warning("agent %s is back (was %s)", agent_id, was)
            self._room()
        await self.published(done)
        self.send_destroys(agent_id, actions)

    async def _on_kernel_terminated(self, peer: PeerId, msg: Message) -> Message | None:
        assert isinstance(msg, KernelTerminated)
        ids = uuids([msg.kernel_id])
        if not ids:
            return None
        agent_id = self._agents[peer]
        self._heard[agent_id] = time.monotonic()
        try:
            async with self._order.setdefault(agent_id, asyncio.Lock()), \
                    self._engine.begin() as conn:
                done = await agent_rows.kernel_ended(conn, agent_id, ids[0], msg.reason)
        except Exception as e:
            if translate(e) is None:
                raise
            self.db.failed(e)  # the next heartbeat finds the container gone
            return None
        self.db.ok()
        await self.published(done)
        return None

    async def published(self, done: list[Transition]) -> None:
        for t in done:
            self._on_gone(t.kernel_id)
        await self._events.publish(done)

    # ---- liveness --------------------------------------------------------------------

    def may_judge(self) -> bool:
        """Judge liveness only after the database was reachable for a whole heartbeat
        timeout (heartbeats could not be stored before that)."""
        return (not self.db.down
                and time.monotonic() - self.db.since >= self.config.heartbeat_timeout)

    async def check_liveness(self) -> list[str]:
        """Fail requests to agents this replica no longer hears; mark LOST the agents no
        replica heard for a heartbeat timeout; after the grace, their sessions ERROR."""
        for agent_id, peer in list(self._peers.items()):
            if not self.hears(agent_id):
                self._drop_peer(peer, "silent")
        if not self.may_judge():
            return []
        heard = self.heard_agents()
        try:
            async with self._engine.begin() as conn:
                lost = await agent_rows.mark_lost(conn, self.config.heartbeat_timeout, heard)
                done = await agent_rows.expire_lost(conn, self.reconcile_config.lost_grace,
                                                    heard)
        except Exception as e:
            if translate(e) is None:
                raise
            self.db.failed(e)
            return []
        self.db.ok()
        for lost_id in lost:
            log.warning("agent %s missed its heartbeats; marked LOST (its sessions wait "
                        "%gs for it)", lost_id, self.reconcile_config.lost_grace)
        await self.published(done)
        return list(lost)

    async def _liveness_loop(self) -> None:
        period = min(self.config.heartbeat_interval, self.config.heartbeat_timeout / 3)
        while True:
            await asyncio.sleep(period)
            try:
                await self.check_liveness()
            except Exception:
                log.exception("agent liveness check failed")
