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
import os
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

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
from agent.resources import ResourcePool
from agent.runner_client import RunnerClient
from agent.runs import KernelRuns
from agent.spec import (
    SpecContext,
    build_container_config,
    granted_slots,
    image_features,
    image_timeout,
)
from agent.stats import dir_size, empty_stats
from common.errors import (
    InvalidAPIParameters,
    KernelCreationFailed,
    KernelNotFound,
    KrakenError,
)
from common.msg_agent import CreateKernel, KernelCreated, KernelTerminated
from common.slots import ResourceSlot
from jail.policy import KERNEL_GID, KERNEL_UID

log = logging.getLogger(__name__)

EventSink = Callable[[KernelTerminated], Awaitable[None]]


@dataclass
class Kernel:
    kernel_id: str
    container_id: str
    scratch: Path
    slots: ResourceSlot
    runner: RunnerClient
    runs: KernelRuns
    features: list[str]
    busy: bool = False  # being destroyed or restarted: its die events are expected
    idle_timeout: float = 0.0  # seconds without activity before agent/idle.py reaps it
    last_active: float = field(default_factory=time.monotonic)

    def touch(self) -> None:
        """Execute, upload or terminal activity: the idle clock starts again."""
        self.last_active = time.monotonic()


def _check_kernel_id(kernel_id: str) -> str:
    try:
        canonical = str(uuid.UUID(kernel_id))
    except (ValueError, TypeError):
        raise InvalidAPIParameters(f"kernel_id {kernel_id!r} is not a UUID") from None
    if canonical != kernel_id:
        raise InvalidAPIParameters(f"kernel_id {kernel_id!r} is not in canonical form")
    return kernel_id


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
        self._creating: dict[str, asyncio.Future[None]] = {}

    @property
    def kernel_ids(self) -> list[str]:
        return sorted(self._kernels)

    def all(self) -> list[Kernel]:
        return list(self._kernels.values())

    def get(self, kernel_id: str) -> Kernel:
        kernel = self._kernels.get(kernel_id)
        if kernel is None:
            raise KernelNotFound(f"kernel {kernel_id} is not on this agent")
        return kernel

    def _scratch(self, kernel_id: str) -> Path:
        return self._cfg.scratch_root / kernel_id

    # ---- create ------------------------------------------------------------------

    async def create(self, req: CreateKernel) -> KernelCreated:
        kid = _check_kernel_id(req.kernel_id)
        if kid in self._kernels or kid in self._creating:
            raise InvalidAPIParameters(f"kernel {kid} already exists on this agent")
        self._creating[kid] = asyncio.get_running_loop().create_future()
        try:
            return await self._create(req)
        finally:
            self._creating.pop(kid, None)

    async def _create(self, req: CreateKernel) -> KernelCreated:
        labels = await self._backend.image_labels(req.image)
        granted = granted_slots(req.slots, labels)
        alloc = self._pool.allocate(req.kernel_id, granted)
        scratch = self._scratch(req.kernel_id)
        info: ContainerInfo | None = None
        runner: RunnerClient | None = None
        try:
            await asyncio.to_thread(_make_scratch, scratch)
            ctx = SpecContext(self._cfg.agent_id, self._cfg.docker.network, scratch)
            config = build_container_config(req, labels, granted, alloc.gpu_ids, ctx)
            info = await self._backend.create_and_start(
                config, f"kraken-{req.kernel_id}", self._cfg.docker.network)
            kernel = self._adopt(info, scratch, granted, labels)
            kernel.idle_timeout = float(req.idle_timeout or 0.0)
            runner = kernel.runner
            await self._wait_ready(kernel)
        except BaseException as e:
            await asyncio.shield(self._undo(req.kernel_id, info, runner, scratch))
            if isinstance(e, (KrakenError, asyncio.CancelledError)):
                raise
            raise KernelCreationFailed(f"{type(e).__name__}: {e}") from None
        self._kernels[req.kernel_id] = kernel
        return KernelCreated(kernel_id=req.kernel_id, container_id=info.container_id,
                             slots=granted.to_wire(), features=kernel.features)

    async def _wait_ready(self, kernel: Kernel) -> None:
        died = self._creating[kernel.kernel_id]
        ready = asyncio.ensure_future(kernel.runner.wait_ready(self._cfg.runner.ready_timeout))
        await asyncio.wait([ready, died], return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ready
            raise KernelCreationFailed("the kernel container exited before its runner was ready")
        ready.result()
        if kernel.runner.features:
            kernel.features = kernel.runner.features

    async def _undo(self, kernel_id: str, info: ContainerInfo | None,
                    runner: RunnerClient | None, scratch: Path) -> None:
        if runner is not None:
            await runner.close()
        if info is not None:
            with contextlib.suppress(KrakenError):
                await self._backend.destroy(info.container_id)
        await asyncio.to_thread(_remove_scratch, scratch)
        self._pool.release(kernel_id)

    def _adopt(self, info: ContainerInfo, scratch: Path, slots: ResourceSlot,
               labels: dict[str, str]) -> Kernel:
        if info.ip is None:
            raise KernelCreationFailed(f"container {info.container_id[:12]} has no address "
                                       f"on network {self._cfg.docker.network}")
        holder: list[KernelRuns] = []
        runner = RunnerClient(self._zctx, info.ip, lambda m: holder[0].on_runner_message(m))
        runs = KernelRuns(runner.send, runner.interrupt, image_timeout(labels))
        holder.append(runs)
        return Kernel(kernel_id=info.kernel_id, container_id=info.container_id,
                      scratch=scratch, slots=slots, runner=runner, runs=runs,
                      features=image_features(labels))

    # ---- destroy / restart -------------------------------------------------------------

    async def destroy(self, kernel_id: str) -> dict[str, int]:
        """Stop and remove a kernel; returns its last Container Stats Object."""
        kernel = self.get(kernel_id)
        kernel.busy = True
        stats = await self.stats(kernel_id)
        with contextlib.suppress(KrakenError):
            await self._backend.stop(kernel.container_id, self._cfg.docker.stop_timeout)
        await self._release(kernel, "the kernel was destroyed")
        return stats

    async def _release(self, kernel: Kernel, note: str) -> None:
        kernel.runs.fail_all(note)
        self._kernels.pop(kernel.kernel_id, None)
        await kernel.runner.close()
        await kernel.runs.close()
        try:
            await self._backend.destroy(kernel.container_id)
        finally:
            await asyncio.to_thread(_remove_scratch, kernel.scratch)
            self._pool.release(kernel.kernel_id)

    async def restart(self, kernel_id: str) -> None:
        """Restart the container in place; /home/work (the scratch dir) is kept."""
        kernel = self.get(kernel_id)
        kernel.busy = True
        try:
            kernel.runs.fail_all("the kernel was restarted")
            await kernel.runner.close()
            await kernel.runs.close()
            info = await self._backend.restart(kernel.container_id,
                                               self._cfg.docker.stop_timeout,
                                               self._cfg.docker.network)
            fresh = self._adopt(info, kernel.scratch, kernel.slots, info.labels)
            kernel.runner, kernel.runs = fresh.runner, fresh.runs
            await kernel.runner.wait_ready(self._cfg.runner.ready_timeout)
        finally:
            kernel.busy = False

    async def stats(self, kernel_id: str) -> dict[str, int]:
        kernel = self.get(kernel_id)
        try:
            stats = await self._backend.stats(kernel.container_id)
        except KrakenError as e:
            log.warning("stats of kernel %s unavailable: %s", kernel_id, e)
            stats = empty_stats()
        size = await asyncio.to_thread(dir_size, kernel.scratch)
        stats["io_cur_scratch_size"] = size
        stats["io_max_scratch_size"] = size
        return stats

    # ---- events and recovery --------------------------------------------------------

    async def on_died(self, event: ContainerDied) -> None:
        """A container of ours died: if nobody asked for it, clean up and report."""
        creating = self._creating.get(event.kernel_id)
        if creating is not None and not creating.done():
            creating.set_result(None)
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
        """Re-adopt our running containers; remove exited ones with their scratch dirs."""
        for info in await self._backend.recover(self._cfg.agent_id, self._cfg.docker.network):
            kid, scratch = info.kernel_id, self._scratch(info.kernel_id)
            if not info.running or not kid or kid in self._kernels:
                log.info("removing exited container of kernel %s", kid or "?")
                await self._backend.destroy(info.container_id)
                if kid and kid not in self._kernels:
                    await asyncio.to_thread(_remove_scratch, scratch)
                continue
            slots = ResourceSlot(json.loads(info.labels.get(LABEL_SLOTS, "{}")))
            gpus = json.loads(info.labels.get(LABEL_GPUS, "[]"))
            self._pool.allocate(kid, slots, gpus)
            self._kernels[kid] = kernel = self._adopt(info, scratch, slots, info.labels)
            kernel.idle_timeout = _float_label(info.labels, LABEL_IDLE_TIMEOUT)
            log.info("re-adopted kernel %s", kid)

    async def keep_only(self, keep: list[str]) -> list[str]:
        """Destroy every kernel the manager no longer owns; returns their ids."""
        dropped = [kid for kid in self.kernel_ids if kid not in set(keep)]
        for kid in dropped:
            log.info("destroying kernel %s: the manager does not know it", kid)
            with contextlib.suppress(KernelNotFound):
                await self.destroy(kid)
        return dropped

    async def close(self) -> None:
        """Disconnect from the runners; the containers keep running (recovery)."""
        for kernel in self._kernels.values():
            await kernel.runner.close()
            await kernel.runs.close()
        self._kernels.clear()


def _float_label(labels: dict[str, str], name: str) -> float:
    try:
        return max(float(labels.get(name, "0")), 0.0)
    except ValueError:
        return 0.0


def _make_scratch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.mkdir(mode=0o700)
    os.chown(path, KERNEL_UID, KERNEL_GID)
    path.chmod(0o700)


def _remove_scratch(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
