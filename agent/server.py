"""The agent daemon: resources, kernels, manager links, Docker events, and dispatch.

``Agent.start()`` prepares the kernels' network, recovers this agent's containers
(DESIGN decision 5), starts watching Docker ``die`` events and dials every
configured manager replica. Manager requests are served through the dispatch table
``handlers[msg_type]``; a failure becomes ``ErrorReply(error_type=<slug>)``. Stream
messages (agent link v2) go to the stream table (agent/streams.py) with the manager
session they came on.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import zmq
import zmq.asyncio

import agent
from agent import idle, stats_report, watchdog
from agent.backend import ContainerBackend
from agent.config import AgentConfig
from agent.files import ScratchFiles, scratch_pool
from agent.identity import check_session_ids
from agent.kernels import KernelRegistry
from agent.manager_link import ManagerSession
from agent.resources import (
    FakeGpuProvider,
    GpuDevice,
    GpuProvider,
    GpuUsage,
    NvmlGpuProvider,
    ResourcePool,
    build_pool,
)
from agent.stream_kinds import STARTERS
from agent.streams import STREAM_MESSAGES, StreamTable
from common.codec import Message
from common.errors import InvalidAPIParameters, KrakenError, ProtocolError
from common.msg_agent import (
    Ack,
    CompleteCode,
    CompletionResult,
    CreateKernel,
    DestroyKernel,
    DownloadFiles,
    ErrorReply,
    Execute,
    FileList,
    FilesArchive,
    FilesUploaded,
    GetKernelStats,
    GetLogs,
    Heartbeat,
    InterruptKernel,
    Join,
    JoinAccepted,
    KernelDestroyed,
    KernelLogs,
    KernelStats,
    KernelStatsBatch,
    KernelTerminated,
    ListFiles,
    RestartKernel,
    UploadFiles,
)
from common.slots import CPU
from common.tasks import spawn_into

log = logging.getLogger(__name__)

MAX_LOG_CHARS = 1 << 20
IMAGES_TIMEOUT = 2.0
Handler = Callable[[Any], Awaitable[Message]]


SOCKETS_PER_SESSION = 3  # the runner's input, output and control sockets


def session_context(max_sessions: int) -> zmq.asyncio.Context:
    """The ZeroMQ context for runner sockets, with room for every session the pool can
    hold: ZeroMQ's default cap is 1023 sockets per context (≈ 340 sessions), and each
    socket needs descriptors, so the soft RLIMIT_NOFILE is raised to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ctx = zmq.asyncio.Context()
    wanted = SOCKETS_PER_SESSION * max_sessions + 64
    if wanted > ctx.get(zmq.MAX_SOCKETS):
        ctx.set(zmq.MAX_SOCKETS, wanted)
    return ctx


def gpu_provider_for(cfg: AgentConfig) -> GpuProvider:
    fakes = cfg.resources.fake_gpus
    if fakes is not None:
        return FakeGpuProvider([GpuDevice(g.uuid, g.name, g.memory) for g in fakes],
                               {g.uuid: GpuUsage(g.util_percent, g.mem_used) for g in fakes})
    return NvmlGpuProvider()


class Agent:
    """One agent process's state and behaviour."""

    def __init__(self, cfg: AgentConfig, backend: ContainerBackend,
                 pool: ResourcePool | None = None) -> None:
        self.cfg = cfg
        self.backend = backend
        self.pool = pool or build_pool(cfg.resources.reserved_cpu, cfg.resources.reserved_mem,
                                       gpu_provider_for(cfg), cfg.resources.cpu_overcommit,
                                       cfg.resources.mem_overcommit)
        self._zctx = session_context(int(self.pool.capacity.get_amount(CPU)))
        self.kernels = KernelRegistry(cfg, backend, self.pool, self._zctx, self.broadcast)
        self.files = ScratchFiles(scratch_pool(cfg.jail.uid, cfg.jail.gid))
        self.streams = StreamTable(self.kernels, STARTERS)
        self.kernels.on_gone.append(self.streams.kernel_gone)
        self.sessions: list[ManagerSession] = []
        # random per process: a second agent configured with our agent_id is refused
        self.instance_id = secrets.token_hex(8)
        self._images: list[dict[str, Any]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._events_task: asyncio.Task[None] | None = None
        self.handlers: dict[str, Handler] = {
            CreateKernel.msg_type: self.kernels.create,
            DestroyKernel.msg_type: self._destroy,
            RestartKernel.msg_type: self._restart,
            Execute.msg_type: self._execute,
            InterruptKernel.msg_type: self._interrupt,
            CompleteCode.msg_type: self._complete,
            GetKernelStats.msg_type: self._stats,
            UploadFiles.msg_type: self._upload,
            ListFiles.msg_type: self._list_files,
            DownloadFiles.msg_type: self._download,
            GetLogs.msg_type: self._logs,
        }

    # ---- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        await self.files.pool.start()
        check_session_ids(self.cfg.jail.uid, self.cfg.jail.gid)
        await self.backend.ensure_network(self.cfg.docker.network)
        await self.kernels.recover()
        self._images = await self._list_images()
        self._events_task = asyncio.ensure_future(self._watch_events())
        self._spawn(idle.reap_loop(self.kernels, self.broadcast))
        self._spawn(watchdog.watch_loop(self.kernels, self.broadcast, self.cfg.runner))
        if self.cfg.stats.interval > 0:
            self._spawn(stats_report.report_loop(self.kernels, self.broadcast,
                                                 self.cfg.stats.interval,
                                                 self.cfg.stats.concurrency))
        key = self.cfg.manager.server_public_key()
        for endpoint in self.cfg.manager.endpoints:
            session = ManagerSession(self, endpoint, key, self.cfg.manager.request_timeout,
                                     self.cfg.manager.link_timeout)
            session.start()
            self.sessions.append(session)

    async def stop(self) -> None:
        """Undo the creates under way (their requests are answered first); leave the
        running containers running: a restarted agent re-adopts them."""
        await self.kernels.cancel_creates()
        await self.streams.close_all()
        for session in self.sessions:
            await session.close()
        if self._events_task is not None:
            self._events_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._events_task
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.kernels.close()
        await self.files.pool.close()
        await self.backend.close()
        self._zctx.term()

    async def _watch_events(self) -> None:
        async for event in self.backend.die_events(self.cfg.agent_id):
            self._spawn(self.kernels.on_died(event))
        log.warning("the Docker event stream ended")

    def _spawn(self, coro: Awaitable[None]) -> None:
        spawn_into(self._tasks, coro, log, "agent task")

    # ---- toward the managers ------------------------------------------------------------

    async def _list_images(self) -> list[dict[str, Any]]:
        """The local kernel images; the last list if Docker fails or is slow, so a hung
        engine never holds up heartbeats."""
        try:
            async with asyncio.timeout(IMAGES_TIMEOUT):
                return [i.to_wire() for i in await self.backend.list_images()]
        except (KrakenError, TimeoutError) as e:
            log.warning("cannot list images: %s", e or "Docker did not answer in time")
            return self._images

    def join_message(self) -> Join:
        return Join(agent_id=self.cfg.agent_id, token=self.cfg.manager.token(),
                    region=self.cfg.region, version=agent.__version__,
                    available_slots=self.pool.capacity.to_wire(), images=self._images,
                    kernels=self.kernels.kernel_ids, creating=self.kernels.creating_ids,
                    gpus=[g.to_wire() for g in self.pool.gpus], group=self.cfg.group,
                    instance_id=self.instance_id)

    async def heartbeat_message(self) -> tuple[Heartbeat, list[dict[str, Any]]]:
        self._images = await self._list_images()
        beat = Heartbeat(agent_id=self.cfg.agent_id,
                         available_slots=self.pool.capacity.to_wire(),
                         occupied_slots=self.pool.occupied.to_wire(),
                         kernels=self.kernels.kernel_ids,
                         creating=self.kernels.creating_ids)
        return beat, self._images

    async def on_join_accepted(self, accepted: JoinAccepted, reported: list[str]) -> None:
        """Destroy only what the manager names in ``drop_kernels``, never a kernel merely
        missing from ``keep_kernels``: that replica's view may be stale (an outage, a fresh
        replica) while another replica still serves the kernel. The drops run in the
        background, so heartbeats start at once."""
        drop = [kid for kid in accepted.drop_kernels if kid in set(reported)]
        if drop:
            self._spawn(self._drop(drop))
        unlisted = set(reported) - set(accepted.keep_kernels) - set(drop)
        if unlisted:
            log.warning("the manager did not list %d held kernel(s) (%s); they are kept "
                        "until a manager destroys them", len(unlisted),
                        ", ".join(sorted(unlisted)))

    async def _drop(self, kernel_ids: list[str]) -> None:
        await self.kernels.drop(kernel_ids, "the manager dropped it at join")

    async def broadcast(self, event: KernelTerminated | KernelStatsBatch) -> None:
        for session in self.sessions:
            await session.send_event(event)

    # ---- requests from a manager --------------------------------------------------------

    def connection_lost(self, session: ManagerSession) -> None:
        self.streams.connection_lost(session)

    async def dispatch(self, msg: Message, session: ManagerSession | None = None
                       ) -> Message | None:
        handler = self.handlers.get(msg.msg_type)
        try:
            if isinstance(msg, STREAM_MESSAGES):
                if session is None:
                    raise ProtocolError("a stream message needs the connection it came on")
                return await self.streams.dispatch(msg, session)
            if handler is None:
                raise ProtocolError(f"the agent does not serve {msg.msg_type}")
            return await handler(msg)
        except KrakenError as e:
            return ErrorReply(error_type=e.slug, detail=str(e))
        except Exception as e:
            log.exception("handler for %s failed", msg.msg_type)
            return ErrorReply(error_type="internal-error", detail=f"{type(e).__name__}: {e}")

    async def _destroy(self, msg: DestroyKernel) -> Message:
        log.info("destroying kernel %s (%s)", msg.kernel_id, msg.reason)
        stats = await self.kernels.destroy(msg.kernel_id)
        return KernelDestroyed(kernel_id=msg.kernel_id, stats=stats)

    async def _restart(self, msg: RestartKernel) -> Message:
        await self.kernels.restart(msg.kernel_id)
        return Ack()

    async def _execute(self, msg: Execute) -> Message:
        kernel = self.kernels.get(msg.kernel_id)
        kernel.touch()
        return await kernel.runs.execute(msg)

    async def _interrupt(self, msg: InterruptKernel) -> Message:
        await self.kernels.get(msg.kernel_id).runner.interrupt()
        return Ack()

    async def _complete(self, msg: CompleteCode) -> Message:
        if not isinstance(msg.code, str):
            raise InvalidAPIParameters("code must be a string")
        runner = self.kernels.get(msg.kernel_id).runner
        return CompletionResult(items=await runner.complete(msg.code, msg.options))

    async def _stats(self, msg: GetKernelStats) -> Message:
        return KernelStats(stats=await self.kernels.stats(msg.kernel_id))

    # ---- files and logs (the kernel's scratch dir is its /home/work) ---------------------

    async def _upload(self, msg: UploadFiles) -> Message:
        kernel = self.kernels.get(msg.kernel_id)
        kernel.touch()
        paths = await self.files.upload(kernel.scratch, msg.files)
        return FilesUploaded(paths=paths)

    async def _list_files(self, msg: ListFiles) -> Message:
        kernel = self.kernels.get(msg.kernel_id)
        abspath, entries = await self.files.list_dir(kernel.scratch, msg.path)
        return FileList(abspath=abspath, files=entries)

    async def _download(self, msg: DownloadFiles) -> Message:
        kernel = self.kernels.get(msg.kernel_id)
        archives = await self.files.download(kernel.scratch, msg.files)
        return FilesArchive(archives=archives)

    async def _logs(self, msg: GetLogs) -> Message:
        kernel = self.kernels.get(msg.kernel_id)
        return KernelLogs(logs=await self.backend.logs(kernel.container_id, MAX_LOG_CHARS))
