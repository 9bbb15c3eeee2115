"""Creating compute sessions: validate → insert PENDING → place → prepare on an agent.

Every path ends with the row in RUNNING or in a final state with a reason; a
failure after the agent was asked to create destroys the container best-effort.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from common.errors import (
    AgentUnavailable,
    ImageNotFound,
    InvalidAPIParameters,
    KernelCreationCancelled,
    KernelCreationFailed,
    KrakenError,
    NoAgentAvailable,
    QuotaExceeded,
    ResourceLimitExceeded,
    SessionAlreadyExists,
)
from common.ids import AgentId, new_kernel_id
from common.link import expect
from common.msg_agent import CreateKernel, DestroyKernel, KernelCreated
from common.slots import CPU, GPU, MEM, ResourceSlot, granted_slots
from common.status import LIVE_STATUS_VALUES as LIVE
from common.status import AgentStatus, SessionStatus
from manager.config import ManagerConfig, SessionsConfig
from manager.db.tables import agents, images, kernels, keypairs
from manager.events import EventBus
from manager.outage import translate
from manager.registry import AgentRegistry
from manager.replica import split_owner, with_owner
from manager.scheduler import (
    AgentSnapshot,
    PlacementRequest,
    could_ever_fit,
    schedule,
    stricter,
)
from manager.services import policies
from manager.services.images import resolve_image
from manager.services.keypairs import KeypairInfo
from manager.services.lifecycle import (
    ORPHANED,
    Transition,
    mark_orphaned,
    record_created,
    transition,
)
from manager.services.queue import PLACEMENT_LOCK, QueueService, enqueue, queue_not_empty
from manager.vfolders.service import VFolderService

log = logging.getLogger(__name__)

# a create that ends in one of these was destroyed by its owner while being created
DESTROYED = frozenset({SessionStatus.TERMINATING, SessionStatus.TERMINATED,
                       SessionStatus.CANCELLED})


@dataclass(frozen=True, slots=True)
class CreateSpec:
    """A validated ``POST /kernel/create`` body."""

    lang: str
    session_name: str
    tag: str | None
    environ: dict[str, str] = field(default_factory=dict)
    cpu: float | None = None
    mem: int | None = None  # bytes
    gpu: float = 0.0
    mounts: tuple[tuple[str, str], ...] = ()  # (vfolder name, target under /home/work)
    group: str | None = None  # agent group; None: the first one the keypair's policy allows
    preset: str | None = None  # resource preset; explicit cpu / mem / gpu win over it
    max_wait: float | None = None  # maxWaitSeconds: how long to wait queued
    enqueue_only: bool = False  # enqueueOnly: answer at once, PENDING


@dataclass(frozen=True, slots=True)
class _Pending:
    kernel_id: uuid.UUID
    image: str
    slots: ResourceSlot
    group: str = policies.DEFAULT_GROUP


class SessionCreator:
    """The create flow; one instance per manager process."""

    def __init__(self, config: ManagerConfig, engine: AsyncEngine,
                 registry: AgentRegistry, events: EventBus) -> None:
        self.config = config
        self._engine = engine
        self._registry = registry
        self._events = events
        self._vfolders = VFolderService(config.vfolders, engine)
        self.queue = QueueService(config.scheduler, engine, events, registry.is_connected,
                                  self._prepare_placed)

    async def create(self, owner: KeypairInfo, spec: CreateSpec) -> tuple[str, bool, str]:
        """Returns (kernelId for the client, created?, status: RUNNING or PENDING).

        A session that does not fit now (or ``enqueueOnly``, or others of its group are
        queued ahead) joins the queue (manager/services/queue.py); the call then waits
        for it to run, up to ``maxWaitSeconds``, unless ``enqueueOnly``. A client that
        disconnects meanwhile leaves the session queued until its deadline.
        """
        wait = spec.max_wait if spec.max_wait is not None else self.config.scheduler.max_wait
        if wait > self.config.scheduler.max_wait_limit:
            raise InvalidAPIParameters(f"'maxWaitSeconds' must be at most "
                                       f"{self.config.scheduler.max_wait_limit:g}")
        async with self._engine.begin() as conn:
            reuse = await self._admit(conn, owner, spec)
            if reuse is None:
                mounts = await self._vfolders.resolve_mounts(owner, list(spec.mounts))
                pending = await self._insert(conn, owner, spec, mounts)
            else:
                waiting = await self._queued_id(conn, owner, spec)
        if reuse is not None:
            if waiting is not None and not spec.enqueue_only:
                # the same token again (a client that reconnected): wait for it again
                await self._wait(waiting, wait)
            return reuse, False, ""
        await self._events.publish([pending[1]])
        queued_wait = None if spec.enqueue_only and spec.max_wait is None else wait
        try:
            placed = await self._place(pending[0], spec, queued_wait)
            if placed:
                await self._prepare(pending[0].kernel_id)
        except BaseException as e:
            instead = await asyncio.shield(self._fail(pending[0].kernel_id, e))
            if instead is not None:
                raise instead from None
            if isinstance(e, Exception) and not isinstance(e, KrakenError):
                # PostgreSQL or Redis gone mid-create: a retryable 503 (the sweep and the
                # next heartbeat settle the half-made session), never a 500
                raise translate(e) or KernelCreationFailed(f"{type(e).__name__}: {e}") from None
            raise
        if placed:
            return spec.session_name, True, SessionStatus.RUNNING.value
        self.queue.kick()
        if spec.enqueue_only:
            return spec.session_name, True, SessionStatus.PENDING.value
        await self._wait(pending[0].kernel_id, wait)
        return spec.session_name, True, SessionStatus.RUNNING.value

    async def _wait(self, kernel_id: uuid.UUID, wait: float) -> None:
        """Wait for a queued session to run; an outage meanwhile answers 503 (the session
        stays queued)."""
        after_placed = self.config.link.create_timeout + self.config.reconcile.settle
        try:
            await self.queue.wait_running(kernel_id, wait, after_placed)
        except Exception as e:
            if isinstance(e, KrakenError) or (outage := translate(e)) is None:
                raise
            raise outage from None

    async def _queued_id(self, conn: AsyncConnection, owner: KeypairInfo,
                         spec: CreateSpec) -> uuid.UUID | None:
        return (await conn.execute(sa.select(kernels.c.id).where(
            kernels.c.access_key == owner.access_key,
            kernels.c.session_name == spec.session_name,
            kernels.c.status == SessionStatus.PENDING.value,
            kernels.c.queued_at.is_not(None)))).scalar()

    async def _admit(self, conn: AsyncConnection, owner: KeypairInfo,
                     spec: CreateSpec) -> str | None:
        """Lock the keypair, honour token reuse and the concurrency limit."""
        await conn.execute(sa.select(keypairs.c.access_key).where(
            keypairs.c.access_key == owner.access_key).with_for_update())
        live = (await conn.execute(sa.select(
            kernels.c.session_name, kernels.c.lang, kernels.c.status, kernels.c.status_info,
        ).where(kernels.c.access_key == owner.access_key, kernels.c.status.in_(LIVE)))).all()
        for row in live:
            if row.session_name == spec.session_name:
                if row.lang == spec.lang:
                    _reusable(row.session_name, row.status, row.status_info)
                    return spec.session_name
                raise SessionAlreadyExists(
                    f"session {spec.session_name!r} is live with lang {row.lang!r}, "
                    f"not {spec.lang!r}")
        # a session being destroyed no longer counts (its owner is done with it, and an
        # unreachable agent can keep it TERMINATING until reconciliation ends it)
        counted = [r for r in live if r.status != SessionStatus.TERMINATING]
        if len(counted) >= owner.concurrency_limit:
            raise QuotaExceeded(
                f"keypair concurrency limit reached ({owner.concurrency_limit} live sessions)")
        policies.check_sessions(await policies.policy_for(conn, owner.access_key), len(counted))
        return None

    async def _insert(self, conn: AsyncConnection, owner: KeypairInfo, spec: CreateSpec,
                      mounts: list[dict[str, str]]) -> tuple[_Pending, Transition]:
        policy = await policies.policy_for(conn, owner.access_key)
        group = await policies.choose_group(conn, policy, spec.group)
        spec = await policies.with_preset(conn, spec, spec.preset)
        image, labels, capacities = await find_image(conn, spec.lang, group)
        wanted = requested_slots(spec, labels, self.config.sessions)
        if not could_ever_fit(capacities, wanted.as_floats()):
            raise ResourceLimitExceeded(
                f"{wanted.to_wire()} exceeds what the largest agent holding this image "
                "can offer")
        await policies.check_slots(conn, owner.access_key, policy, wanted.to_wire())
        kernel_id = new_kernel_id()
        event = await record_created(conn, {
            "id": kernel_id, "session_name": spec.session_name,
            "access_key": owner.access_key, "lang": spec.lang, "image": image,
            "tag": spec.tag, "slots": wanted.to_wire(), "environ": spec.environ,
            "mounts": mounts, "scaling_group": group,
        })
        return _Pending(kernel_id, image, wanted, group), event

    async def _place(self, pending: _Pending, spec: CreateSpec, wait: float | None) -> bool:
        """PENDING → SCHEDULED on the best-fit agent (True), or into the queue (False)
        when nothing fits now, others of its group wait ahead of it, or enqueueOnly."""
        async with self._engine.begin() as conn:
            await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(PLACEMENT_LOCK)))
            chosen = None
            if not spec.enqueue_only and not await queue_not_empty(conn, pending.group):
                snapshot = await agents_holding(conn, pending.image)
                connected = [a for a in snapshot if self._registry.is_connected(a.agent_id)
                             and a.group == pending.group]
                chosen = schedule(connected, PlacementRequest(
                    pending.image, pending.slots.as_floats(), pending.group))
            if chosen is None:
                await enqueue(conn, pending.kernel_id, wait)
                return False
            done = await transition(conn, pending.kernel_id, SessionStatus.SCHEDULED,
                                    None, {"agent_id": chosen})
        await self._events.publish([done])
        if done is None:
            raise KernelCreationCancelled("the session was destroyed while being created")
        return True

    async def _prepare(self, kernel_id: uuid.UUID) -> None:
        """SCHEDULED → PREPARING → agent CreateKernel → RUNNING; on failure → ERROR."""
        row = await self._move(
            kernel_id, SessionStatus.PREPARING, with_owner(None, self._registry.lease.instance))
        async with self._engine.connect() as conn:
            idle = await policies.idle_timeout_for(conn, row.access_key,
                                                   self.config.sessions.idle_timeout)
        msg = CreateKernel(kernel_id=str(kernel_id), session_name=row.session_name,
                           access_key=row.access_key, image=row.image, slots=dict(row.slots),
                           environ=dict(row.environ or {}), mounts=list(row.mounts or []),
                           idle_timeout=idle)
        reply = await self._registry.request(AgentId(row.agent_id), msg,
                                             self.config.link.create_timeout)
        created = expect(reply, KernelCreated)
        await self._move(kernel_id, SessionStatus.RUNNING, None, {
            "container_id": created.container_id,
            "slots": dict(created.slots or row.slots)})

    async def _prepare_placed(self, kernel_id: uuid.UUID) -> None:
        """Prepare a session a queue pass placed (nobody may be waiting for it here)."""
        try:
            await self._prepare(kernel_id)
        except BaseException as e:
            await asyncio.shield(self._fail(kernel_id, e))
            if not isinstance(e, Exception):
                raise
            log.info("queued session %s did not start: %s", kernel_id, e)

    async def _move(self, kernel_id: uuid.UUID, new: SessionStatus, reason: str | None,
                    extra: dict[str, Any] | None = None) -> Any:
        async with self._engine.begin() as conn:
            done = await transition(conn, kernel_id, new, reason, extra)
            row = (await conn.execute(sa.select(
                kernels.c.agent_id, kernels.c.slots, kernels.c.image, kernels.c.status,
                kernels.c.session_name, kernels.c.access_key, kernels.c.environ,
                kernels.c.mounts,
            ).where(kernels.c.id == kernel_id))).one()
        await self._events.publish([done])
        if done is None and row.status != new:  # (already RUNNING: adopted meanwhile)
            raise KernelCreationFailed(f"session became {row.status} while being created")
        return row

    async def _fail(self, kernel_id: uuid.UUID, error: BaseException
                    ) -> KrakenError | None:
        """Settle a create that did not reach RUNNING; returns the error to answer with
        instead of ``error``, if any.

        Destroyed while being created → the destroy call owns the session (409
        kernel-creation-cancelled). The agent's link dropped → the session stays
        PREPARING, marked orphaned, for reconciliation to adopt or fail from the
        agent's next report (the agent may hold a healthy container). Anything else →
        ERROR, and the agent is told to destroy what it may have created.
        """
        reason = getattr(error, "detail", None) or str(error) or type(error).__name__
        try:
            async with self._engine.begin() as conn:
                row = (await conn.execute(sa.select(
                    kernels.c.agent_id, kernels.c.status, kernels.c.status_info,
                ).where(kernels.c.id == kernel_id).with_for_update())).one()
                status = SessionStatus(row.status)
                if isinstance(error, KernelCreationCancelled) or (
                        status in DESTROYED
                        and split_owner(row.status_info)[0] == "user-requested"):
                    return KernelCreationCancelled(
                        "the session was destroyed while it was being created")
                if isinstance(error, AgentUnavailable) and status is SessionStatus.PREPARING:
                    await mark_orphaned(conn, kernel_id)
                    return None
                done = await transition(conn, kernel_id, SessionStatus.ERROR,
                                        f"creation-failed: {reason}")
            await self._events.publish([done])
        except Exception as failure:
            if translate(failure) is None:
                log.exception("cannot mark session %s ERROR", kernel_id)
            else:  # an outage: the sweep settles it once the database is back
                log.warning("cannot mark session %s ERROR now: %s", kernel_id,
                            type(failure).__name__)
            return None
        if done is not None and status is SessionStatus.PREPARING and row.agent_id:
            with contextlib.suppress(Exception):
                await self._registry.request(row.agent_id, DestroyKernel(
                    kernel_id=str(kernel_id), reason="creation-failed"), 10.0)
        return None


def _reusable(name: str, status: str, info: str | None) -> None:
    """Token reuse never hands out a session that cannot become usable by itself."""
    if status == SessionStatus.TERMINATING:
        raise AgentUnavailable(f"session {name!r} is being destroyed; retry shortly")
    if status == SessionStatus.PREPARING and info == ORPHANED:
        raise AgentUnavailable(f"session {name!r} is being recovered after its agent "
                               "reconnected; retry shortly")


def requested_slots(spec: CreateSpec, labels: Mapping[str, Any],
                    sessions: SessionsConfig) -> ResourceSlot:
    """What a create asks for, sized by the one rule (common.slots.granted_slots)."""
    asked = {k: v for k, v in ((CPU, spec.cpu), (MEM, spec.mem), (GPU, spec.gpu or None))
             if v is not None}
    return granted_slots(asked, labels, sessions.default_cpu, sessions.default_mem_bytes)


async def find_image(conn: AsyncConnection, lang: str, group: str
                      ) -> tuple[str, dict[str, Any], list[dict[str, float]]]:
    """(image, labels, capacities of ALIVE agents of ``group`` holding it).

    Images of LOST agents still count as known: a create while the only agent with
    the image is lost answers 503 no-agent-available, not 404 image-not-found.
    """
    rows = (await conn.execute(
        sa.select(images.c.name, images.c.labels, agents.c.available_slots, agents.c.status,
                  agents.c.scaling_group)
        .join(agents, agents.c.id == images.c.agent_id)
        .where(agents.c.status.in_([AgentStatus.ALIVE.value, AgentStatus.LOST.value])))).all()
    image = resolve_image(lang, (r.name for r in rows))
    if image is None:
        raise ImageNotFound(f"no agent offers an image for lang {lang!r}")
    matching = [r for r in rows if r.name == image]
    alive = [r for r in matching if r.status == AgentStatus.ALIVE.value]
    if not alive:
        raise NoAgentAvailable(f"the agents holding {image} are unreachable now; retry later")
    alive = [r for r in alive if r.scaling_group == group]
    if not alive:
        raise NoAgentAvailable(f"no reachable agent of agent group {group!r} holds {image}")
    return image, dict(matching[0].labels or {}), [
        ResourceSlot.from_wire(r.available_slots).as_floats() for r in alive]


async def agents_holding(conn: AsyncConnection, image: str) -> list[AgentSnapshot]:
    """ALIVE agents holding ``image``; occupancy is the stricter of the sum over live
    sessions and what the agent last reported, so a leak never invites a refusal."""
    agent_rows = (await conn.execute(
        sa.select(agents.c.id, agents.c.available_slots, agents.c.occupied_slots,
                  agents.c.scaling_group)
        .join(images, images.c.agent_id == agents.c.id)
        .where(agents.c.status == AgentStatus.ALIVE.value, images.c.name == image))).all()
    if not agent_rows:
        return []
    ids = [r.id for r in agent_rows]
    used = (await conn.execute(sa.select(kernels.c.agent_id, kernels.c.slots).where(
        kernels.c.agent_id.in_(ids), kernels.c.status.in_(LIVE)))).all()
    occupied: dict[str, dict[str, float]] = {i: {} for i in ids}
    for row in used:
        acc = occupied[row.agent_id]
        for key, value in ResourceSlot.from_wire(row.slots).as_floats().items():
            acc[key] = acc.get(key, 0.0) + value
    return [AgentSnapshot(AgentId(r.id), ResourceSlot.from_wire(r.available_slots).as_floats(),
                          stricter(occupied[r.id],
                                    ResourceSlot.from_wire(r.occupied_slots).as_floats()),
                          frozenset({image}), r.scaling_group) for r in agent_rows]
