"""The kernels this agent holds, and their lifecycle: create, destroy, restart, recover.

``KernelRegistry`` keeps one ``Kernel`` per container (container id, runner client,
slots, runs). Every path that fails half-way undoes what it did: the container is
removed, the scratch dir deleted, the slots freed.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq.asyncio

from agent.backend import (
    LABEL_GPUS,
    LABEL_IDLE_TIMEOUT,
    LABEL_SLOTS,
    ContainerBackend,
    ContainerDied,
    ContainerInfo,
)
from agent.config import AgentConfig
from agent.creates import (
    CANCELLED,
    DIED,
    SHUTDOWN,
    CreateState,
    Tombstones,
    check_kernel_id,
    retrieved,
)
from agent.resources import ResourcePool
from agent.runner_client import RunnerClient
from agent.runs import KernelRuns, OutputLimits
from agent.scratch import ScratchStore
from agent.spec import (
    SpecContext,
    build_container_config,
    image_features,
    image_timeout,
    scratch_size,
)
from agent.stats import gpu_stats
from agent.terminals import Terminals
from common.errors import (
    InvalidAPIParameters,
    KernelCreationCancelled,
    KernelCreationFailed,
    KernelNotFound,
    KrakenError,
)
from common.msg_agent import CreateKernel, KernelCreated, KernelTerminated
from common.msg_runner import Message, PtyClosed, PtyOutput
from common.slots import ResourceSlot, granted_slots
from common.stats import empty_stats

log = logging.getLogger(__name__)

EventSink = Callable[[KernelTerminated], Awaitable[None]]
KernelGone = Callable[[str, str], None]  # (kernel id, reason its streams end with)
SESSION_TERMINATED = "session terminated"
KERNEL_RESTARTED = "kernel restarted"


@dataclass
class Kernel:
    kernel_id: str
    container_id: str
    scratch: Path
    slots: ResourceSlot
    runner: RunnerClient
    runs: KernelRuns
    features: list[str]
    terminals: Terminals
    labels: dict[str, str] = field(default_factory=dict)  # the image's (services, ...)
    busy: bool = False  # being destroyed or restarted: its die events are expected
    last_pong: float = field(default_factory=time.monotonic)  # the runner's last answer
    silent_cpu: tuple[float, int] | None = None  # (when, cpu ms) sampled while it is silent
    idle_timeout: float = 0.0  # seconds without activity before agent/idle.py reaps it
    last_active: float = field(default_factory=time.monotonic)

    def touch(self) -> None:
        """Execute, upload or terminal activity: the idle clock starts again."""
        self.last_active = time.monotonic()


class KernelRegistry:
    """Owns every kernel container of this agent."""

    def __init__(self, cfg: AgentConfig, backend: ContainerBackend, pool: ResourcePool,
                 zctx: zmq.asyncio.Context, on_terminated: EventSink) -> None:
        self._cfg = cfg
        self._backend = backend
        self._pool = pool
        self._zctx = zctx
        self._on_terminated = on_terminated
        self._kernels: dict[str, Kernel] = {}
        self._creating: dict[str, CreateState] = {}
        self._tombstones = Tombstones()
        self._destroying: dict[str, asyncio.Future[dict[str, int]]] = {}
        self._store = ScratchStore(cfg)
        self.on_gone: list[KernelGone] = []  # told when a kernel is destroyed or restarts

    @property
    def kernel_ids(self) -> list[str]:
        """The kernels whose container runs and whose runner answered."""
        return sorted(self._kernels)

    @property
    def creating_ids(self) -> list[str]:
        """The kernels whose create is under way (their slots are already occupied)."""
        return sorted(self._creating)

    def all(self) -> list[Kernel]:
        return list(self._kernels.values())

    def get(self, kernel_id: str) -> Kernel:
        kernel = self._kernels.get(kernel_id)
        if kernel is None:
            raise KernelNotFound(f"kernel {kernel_id} is not on this agent")
        return kernel

    # ---- create ------------------------------------------------------------------

    async def create(self, req: CreateKernel) -> KernelCreated:
        kid = check_kernel_id(req.kernel_id)
        if kid in self._kernels or kid in self._creating:
            raise InvalidAPIParameters(f"kernel {kid} already exists on this agent")
        if kid in self._tombstones:
            raise KernelCreationCancelled(f"kernel {kid} was destroyed before its create came")
        state = self._creating[kid] = CreateState(kid)
        state.task = asyncio.ensure_future(self._create_tracked(req, state))
        state.task.add_done_callback(retrieved)  # its request may be gone (link closed)
        return await asyncio.shield(state.task)  # a closing link does not cut a create short

    async def _create_tracked(self, req: CreateKernel, state: CreateState) -> KernelCreated:
        try:
            return await self._create(req, state)
        finally:
            self._creating.pop(req.kernel_id, None)

    async def _create(self, req: CreateKernel, state: CreateState) -> KernelCreated:
        labels = await self._backend.image_labels(req.image)
        granted = granted_slots(req.slots, labels)
        size = scratch_size(labels, self._cfg.scratch.default_size, self._cfg.scratch.max_size)
        alloc = self._pool.allocate(req.kernel_id, granted)
        info: ContainerInfo | None = None
        runner: RunnerClient | None = None
        made: asyncio.Future[Path] | None = None
        try:
            state.check()
            made = asyncio.ensure_future(asyncio.to_thread(self._store.create, req.kernel_id,
                                                           size))
            scratch = await asyncio.shield(made)
            state.check()
            ctx = SpecContext(self._cfg.agent_id, self._cfg.docker.network, scratch,
                              uid=self._cfg.jail.uid, gid=self._cfg.jail.gid)
            config = build_container_config(req, labels, granted, alloc.gpu_ids, ctx)
            info = await self._backend.create_and_start(
                config, f"kraken-{req.kernel_id}", self._cfg.docker.network)
            state.check()
            kernel = self._adopt(info, scratch, granted, labels)
            kernel.idle_timeout = float(req.idle_timeout or 0.0)
            runner = kernel.runner
            await self._wait_ready(kernel, state)
            state.check()  # nothing awaits from here on: a cancel either came or waits
        except BaseException as e:
            await asyncio.shield(self._undo(req.kernel_id, info, runner, made))
            if isinstance(e, (KrakenError, asyncio.CancelledError)):
                raise
            raise KernelCreationFailed(f"{type(e).__name__}: {e}") from None
        self._kernels[req.kernel_id] = kernel
        return KernelCreated(kernel_id=req.kernel_id, container_id=info.container_id,
                             slots=granted.to_wire(), features=kernel.features)

    async def _wait_ready(self, kernel: Kernel, state: CreateState) -> None:
        ready = asyncio.ensure_future(kernel.runner.wait_ready(self._cfg.runner.ready_timeout))
        either: list[asyncio.Future[Any]] = [ready, state.stop]
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ready
            state.check()
        ready.result()
        kernel.last_pong = time.monotonic()
        if kernel.runner.features:
            kernel.features = kernel.runner.features

    async def cancel_creates(self, reason: str = SHUTDOWN, timeout: float = 60.0) -> None:
        """Stop every create under way and wait until each has undone its work."""
        states = list(self._creating.values())
        for state in states:
            state.abort(reason)
        tasks = [s.task for s in states if s.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    async def _undo(self, kernel_id: str, info: ContainerInfo | None,
                    runner: RunnerClient | None, made: asyncio.Future[Path] | None) -> None:
        if runner is not None:
            await runner.close()
        if info is not None:
            with contextlib.suppress(KrakenError):
                await self._backend.destroy(info.container_id)
        if made is not None:
            # a cancelled create leaves mkfs/mount running in its thread: let it finish
            # (it undoes itself on failure) so that nothing is mounted after the removal
            with contextlib.suppress(Exception):
                await made
            await asyncio.to_thread(self._store.remove, kernel_id)
        self._pool.release(kernel_id)

    def _adopt(self, info: ContainerInfo, scratch: Path, slots: ResourceSlot,
               labels: dict[str, str], recovered: bool = False) -> Kernel:
        if info.ip is None:
            raise KernelCreationFailed(f"container {info.container_id[:12]} has no address "
                                       f"on network {self._cfg.docker.network}")
        holder: list[tuple[KernelRuns, Terminals]] = []

        def on_output(msg: Message) -> None:
            runs, terminals = holder[0]
            if isinstance(msg, (PtyOutput, PtyClosed)):
                terminals.on_runner_message(msg)
            else:
                runs.on_runner_message(msg)

        runner = RunnerClient(self._zctx, info.ip, on_output)
        limits = OutputLimits(self._cfg.runs.max_output, self._cfg.runs.max_kernel_output)
        runs = KernelRuns(runner.send, runner.interrupt, image_timeout(labels), limits,
                          recovered)
        terminals = Terminals(runner.send)
        holder.append((runs, terminals))
        return Kernel(kernel_id=info.kernel_id, container_id=info.container_id,
                      scratch=scratch, slots=slots, runner=runner, runs=runs,
                      features=image_features(labels), terminals=terminals,
                      labels=dict(labels))

    # ---- destroy / restart -------------------------------------------------------------

    async def destroy(self, kernel_id: str) -> dict[str, int]:
        """Stop and remove a kernel; returns its last Container Stats Object.

        A kernel still being created has its create cancelled (the create request is
        answered ``kernel-creation-cancelled``) and no stats: ``{}``. Concurrent destroys
        of one kernel (a user's and a manager's reconciliation) share one removal.
        """
        ongoing = self._destroying.get(kernel_id)
        if ongoing is not None:
            return dict(await asyncio.shield(ongoing))
        done = self._destroying[kernel_id] = asyncio.get_running_loop().create_future()
        try:
            stats = await self._destroy(kernel_id)
        except BaseException as e:
            done.set_exception(e)
            done.exception()  # retrieved: only the concurrent callers re-raise it
            raise
        else:
            done.set_result(stats)
            return stats
        finally:
            self._destroying.pop(kernel_id, None)

    async def _destroy(self, kernel_id: str) -> dict[str, int]:
        self._tombstones.add(kernel_id)
        state = self._creating.get(kernel_id)
        if state is not None and state.task is not None:
            log.info("kernel %s is being created: cancelling the create", kernel_id)
            state.abort(CANCELLED)
            await asyncio.wait([state.task])
            if kernel_id not in self._kernels:
                return {}
        kernel = self.get(kernel_id)
        kernel.busy = True
        stats = await self.stats(kernel_id)
        with contextlib.suppress(KrakenError):
            await self._backend.stop(kernel.container_id, self._cfg.docker.stop_timeout)
        await self._release(kernel, "the kernel was destroyed")
        return stats

    def _gone(self, kernel_id: str, reason: str) -> None:
        for listener in self.on_gone:
            try:
                listener(kernel_id, reason)
            except Exception:
                log.exception("a kernel-gone listener failed")

    async def _release(self, kernel: Kernel, note: str) -> None:
        kernel.runs.fail_all(note)
        self._kernels.pop(kernel.kernel_id, None)
        self._gone(kernel.kernel_id, SESSION_TERMINATED)
        await kernel.runner.close()
        await kernel.runs.close()
        await kernel.terminals.close()
        try:
            await self._backend.destroy(kernel.container_id)
        finally:
            await asyncio.to_thread(self._store.remove, kernel.kernel_id)
            self._pool.release(kernel.kernel_id)

    async def restart(self, kernel_id: str) -> None:
        """Restart the container in place; /home/work (the scratch dir) is kept."""
        kernel = self.get(kernel_id)
        kernel.busy = True
        try:
            kernel.runs.fail_all("the kernel was restarted")
            self._gone(kernel_id, KERNEL_RESTARTED)
            await kernel.runner.close()
            await kernel.runs.close()
            await kernel.terminals.close()
            info = await self._backend.restart(kernel.container_id,
                                               self._cfg.docker.stop_timeout,
                                               self._cfg.docker.network)
            fresh = self._adopt(info, kernel.scratch, kernel.slots, info.labels)
            kernel.runner, kernel.runs, kernel.labels = fresh.runner, fresh.runs, fresh.labels
            kernel.terminals = fresh.terminals
            await kernel.runner.wait_ready(self._cfg.runner.ready_timeout)
            kernel.last_pong = time.monotonic()
        finally:
            kernel.busy = False

    async def cpu_used(self, kernel_id: str) -> int | None:
        """CPU milliseconds the kernel's container used so far; None if unknown."""
        try:
            kernel = self.get(kernel_id)
            return (await self._backend.stats(kernel.container_id)).get("cpu_used")
        except KrakenError:
            return None

    async def stats(self, kernel_id: str) -> dict[str, int]:
        kernel = self.get(kernel_id)
        try:
            stats = await self._backend.stats(kernel.container_id)
        except KrakenError as e:
            log.warning("stats of kernel %s unavailable: %s", kernel_id, e)
            stats = empty_stats()
        size = await asyncio.to_thread(self._store.usage, kernel_id)
        stats["io_cur_scratch_size"] = size
        stats["io_max_scratch_size"] = size
        alloc = self._pool.allocation(kernel_id)
        provider = self._pool.gpu_provider
        if alloc is not None and alloc.gpu_ids and provider is not None:
            usage = await asyncio.to_thread(provider.usage, alloc.gpu_ids)
            stats.update(gpu_stats(usage, alloc.gpu_ids))
        return stats

    # ---- events and recovery --------------------------------------------------------

    async def on_died(self, event: ContainerDied) -> None:
        """A container of ours died: if nobody asked for it, clean up and report."""
        creating = self._creating.get(event.kernel_id)
        if creating is not None:
            creating.abort(DIED)
            return
        kernel = self._kernels.get(event.kernel_id)
        if kernel is None or kernel.busy or kernel.container_id != event.container_id:
            return
        try:
            info: ContainerInfo | None = await self._backend.inspect(
                kernel.container_id, self._cfg.docker.network)
        except KernelNotFound:
            info = None
        if info is not None and info.running:
            return  # restarted meanwhile
        code = info.exit_code if info is not None else event.exit_code
        reason = "oom-killed" if info is not None and info.oom_killed else "self-terminated"
        kernel.busy = True
        await self._release(kernel, f"the kernel container exited ({reason}, code {code})")
        await self._on_terminated(KernelTerminated(kernel_id=kernel.kernel_id, reason=reason,
                                                   exit_code=code))

    async def recover(self) -> None:
        """Re-adopt our running containers and the runs going in them; remove exited
        containers with their scratch spaces."""
        adopted: list[Kernel] = []
        for info in await self._backend.recover(self._cfg.agent_id, self._cfg.docker.network):
            kid = info.kernel_id
            if not info.running or not kid or kid in self._kernels:
                log.info("removing exited container of kernel %s", kid or "?")
                await self._backend.destroy(info.container_id)
                if kid and kid not in self._kernels:
                    await asyncio.to_thread(self._store.remove, kid)
                continue
            try:
                scratch = await asyncio.to_thread(self._store.ensure, kid)
            except (KrakenError, OSError) as e:
                log.error("dropping kernel %s: its scratch is lost: %s", kid, e)
                await self._backend.destroy(info.container_id)
                await asyncio.to_thread(self._store.remove, kid)
                continue
            slots = ResourceSlot(json.loads(info.labels.get(LABEL_SLOTS, "{}")))
            gpus = json.loads(info.labels.get(LABEL_GPUS, "[]"))
            self._pool.allocate(kid, slots, gpus)
            self._kernels[kid] = kernel = self._adopt(info, scratch, slots, info.labels,
                                                      recovered=True)
            kernel.idle_timeout = _float_label(info.labels, LABEL_IDLE_TIMEOUT)
            adopted.append(kernel)
            log.info("re-adopted kernel %s", kid)
        await asyncio.gather(*(self._reattach(k) for k in adopted))

    async def _reattach(self, kernel: Kernel) -> None:
        """Ask the runner what it is running, so that run is not lost (docs/agent.md)."""
        try:
            status = await kernel.runner.status()
        except KrakenError as e:
            log.warning("runner of kernel %s did not say what it runs: %s", kernel.kernel_id, e)
            status = None
        kernel.runs.reattach(status)
        kernel.last_pong = time.monotonic()

    async def kill(self, kernel_id: str, note: str) -> bool:
        """Remove a kernel at once (no stop grace): its runs end with ``note``. False if
        it is gone or being destroyed or restarted already."""
        kernel = self._kernels.get(kernel_id)
        if kernel is None or kernel.busy:
            return False
        kernel.busy = True
        self._tombstones.add(kernel_id)
        await self._release(kernel, note)
        return True

    async def drop(self, kernel_ids: list[str], why: str) -> list[str]:
        """Destroy the listed kernels this agent holds or is creating; returns their ids."""
        dropped = [kid for kid in kernel_ids if kid in self._kernels or kid in self._creating]
        for kid in dropped:
            log.info("destroying kernel %s: %s", kid, why)
            with contextlib.suppress(KernelNotFound):
                await self.destroy(kid)
        return dropped

    async def close(self) -> None:
        """Undo the creates under way; disconnect from the runners (their containers keep
        running for recovery)."""
        await self.cancel_creates()
        for kernel in self._kernels.values():
            await kernel.runner.close()
            await kernel.runs.close()
            await kernel.terminals.close()
        self._kernels.clear()


def _float_label(labels: dict[str, str], name: str) -> float:
    try:
        return max(float(labels.get(name, "0")), 0.0)
    except ValueError:
        return 0.0

