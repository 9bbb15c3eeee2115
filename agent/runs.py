"""The run state machine of one kernel (seed 004 §2.10 execute model, §2.9.6 results).

A *run* starts with an ``Execute`` in mode query or batch and lasts until the runner
reports the exec phase finished. Runs are served in FIFO order: one is active in the
runner, the rest wait. Each execute call waits — on futures, never by polling — for
the run's next *milestone* (clean/build/exec finished, waiting for input, timeout)
or for its flush timeout, and returns the console produced since the previous call.
"""
from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from common.errors import InvalidAPIParameters, KrakenError
from common.msg_agent import Execute, ExecuteResult
from common.msg_runner import (
    ConsoleOutput,
    FeedInput,
    Message,
    RunBatch,
    RunFinished,
    RunQuery,
    WaitingInput,
)

log = logging.getLogger(__name__)

MAX_STREAM_CHARS = 524_288
KEEP_FINISHED = 16
_PHASE_STATUS = {"clean": "clean-finished", "build": "build-finished", "exec": "finished"}
FINAL_STATUSES = frozenset({"finished", "exec-timeout"})

SendFn = Callable[[Message], Awaitable[None]]
InterruptFn = Callable[[], Awaitable[None]]


@dataclass
class Milestone:
    status: str
    exit_code: int | None
    options: dict[str, Any] | None
    console: list[list[Any]]


@dataclass
class Run:
    run_id: str
    start_msg: Message
    console: list[list[Any]] = field(default_factory=list)
    milestones: collections.deque[Milestone] = field(default_factory=collections.deque)
    waiter: asyncio.Future[None] | None = None
    started: bool = False
    done: bool = False  # the runner is through with it
    timed_out: bool = False
    timer: asyncio.TimerHandle | None = None

    def wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def add_milestone(self, status: str, exit_code: int | None,
                      options: dict[str, Any] | None = None) -> None:
        self.milestones.append(Milestone(status, exit_code, options, self.console))
        self.console = []
        self.wake()


def shape_console(items: list[list[Any]]) -> list[list[Any]]:
    """Merge contiguous stdout/stderr text and cap each stream per call (seed §2.10.2)."""
    out: list[list[Any]] = []
    used = {"stdout": 0, "stderr": 0}
    dropped = {"stdout": 0, "stderr": 0}
    for kind, data in items:
        if kind in used and isinstance(data, str):
            room = MAX_STREAM_CHARS - used[kind]
            if len(data) > room:
                dropped[kind] += len(data) - max(room, 0)
                data = data[:max(room, 0)]
            used[kind] += len(data)
            if not data:
                continue
            if out and out[-1][0] == kind:
                out[-1][1] += data
                continue
        out.append([kind, data])
    for kind, n in dropped.items():
        if n:
            note = (f"\n[kraken: {n} characters of {kind} dropped: "
                    f"more than {MAX_STREAM_CHARS} in one call]\n")
            out.append(["stderr", note])
    return out


class KernelRuns:
    """All runs of one kernel: the FIFO, the active run, and results waiting to be read."""

    def __init__(self, send: SendFn, interrupt: InterruptFn, exec_timeout: float = 0.0) -> None:
        self._send = send
        self._interrupt = interrupt
        self._exec_timeout = exec_timeout
        self._runs: dict[str, Run] = {}
        self._queue: collections.deque[Run] = collections.deque()
        self._active: Run | None = None
        self._finished: collections.deque[str] = collections.deque()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def active_run_id(self) -> str | None:
        return self._active.run_id if self._active else None

    async def execute(self, req: Execute) -> ExecuteResult:
        """Serve one execute call."""
        if req.mode in ("query", "batch"):
            run = await self._submit(req)
        elif req.mode in ("continue", "input"):
            run = self._runs.get(req.run_id) or self._unknown(req.run_id)
            if req.mode == "input":
                if run is not self._active:
                    raise InvalidAPIParameters(f"run {req.run_id} is not waiting for input")
                await self._send(FeedInput(run_id=run.run_id, text=req.code))
        else:
            raise InvalidAPIParameters(f"unknown execute mode {req.mode!r}")
        return await self._collect(run, req.flush_timeout)

    @staticmethod
    def _unknown(run_id: str) -> Run:
        raise InvalidAPIParameters(f"unknown runId {run_id!r}")

    async def _submit(self, req: Execute) -> Run:
        if req.run_id in self._runs:
            raise InvalidAPIParameters(f"run {req.run_id} already exists; use mode continue")
        run = Run(run_id=req.run_id, start_msg=_start_message(req))
        self._runs[run.run_id] = run
        self._queue.append(run)
        await self._start_next()
        return run

    async def _start_next(self) -> None:
        if self._active is not None or not self._queue:
            return
        run = self._queue.popleft()
        self._active, run.started = run, True
        if self._exec_timeout > 0:
            loop = asyncio.get_running_loop()
            run.timer = loop.call_later(self._exec_timeout, self._on_timeout, run)
        try:
            await self._send(run.start_msg)
        except KrakenError as e:  # the runner link is gone: fail this run, keep the FIFO going
            self._finish(run, -1, f"\n[kraken: cannot reach the runner: {e}]\n")
            await self._start_next()

    async def _collect(self, run: Run, flush_timeout: float) -> ExecuteResult:
        if not run.milestones:
            await self._wait(run, flush_timeout)
        if run.milestones:
            m = run.milestones.popleft()
            if m.status in FINAL_STATUSES:
                self._forget(run)
            return ExecuteResult(run_id=run.run_id, status=m.status, exit_code=m.exit_code,
                                 options=m.options, console=shape_console(m.console))
        console, run.console = run.console, []
        return ExecuteResult(run_id=run.run_id, status="continued",
                             console=shape_console(console))

    async def _wait(self, run: Run, timeout: float) -> None:
        run.wake()  # a newer call on the same run supersedes an older one
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        run.waiter = fut
        handle = loop.call_later(max(timeout, 0.0), _resolve, fut)
        try:
            await fut
        finally:
            handle.cancel()
            if run.waiter is fut:
                run.waiter = None

    def _forget(self, run: Run) -> None:
        self._runs.pop(run.run_id, None)

    # ---- runner events -------------------------------------------------------------

    def on_runner_message(self, msg: Message) -> None:
        """Feed one message from the runner's output socket."""
        run_id = getattr(msg, "run_id", "")
        run = self._runs.get(run_id)
        if run is None and self._active is not None and self._active.run_id == run_id:
            run = self._active  # timed out and already reported, still running
        if run is None:
            log.debug("dropping %s for an unknown run", msg.msg_type)
            return
        if isinstance(msg, ConsoleOutput):
            run.console.extend(msg.items)
        elif isinstance(msg, WaitingInput):
            run.add_milestone("waiting-input", None, {"is_password": msg.is_password})
        elif isinstance(msg, RunFinished):
            self._on_finished(run, msg)

    def _on_finished(self, run: Run, msg: RunFinished) -> None:
        if msg.phase != "exec":
            run.add_milestone(_PHASE_STATUS.get(msg.phase, "continued"), msg.exit_code)
            return
        self._finish(run, msg.exit_code, None, add=not run.timed_out)
        self._spawn(self._start_next())

    def _finish(self, run: Run, exit_code: int, note: str | None, add: bool = True) -> None:
        if run.timer is not None:
            run.timer.cancel()
        if note:
            run.console.append(["stderr", note])
        run.done = True
        if self._active is run:
            self._active = None
        if add:
            run.add_milestone("finished", exit_code)
        self._finished.append(run.run_id)
        while len(self._finished) > KEEP_FINISHED:  # results nobody came back for
            old = self._runs.get(self._finished.popleft())
            if old is not None and old.done and old is not run:
                self._runs.pop(old.run_id, None)

    def _on_timeout(self, run: Run) -> None:
        if run.done or run.timed_out:
            return
        run.timed_out = True
        run.add_milestone("exec-timeout", None)
        self._spawn(self._interrupt())

    def fail_all(self, note: str) -> None:
        """The container died: every unfinished run ends with exit code -1."""
        pending = [r for r in self._runs.values() if not r.done]
        self._queue.clear()
        self._active = None
        for run in pending:
            self._finish(run, -1, f"\n[kraken: {note}]\n")

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("run bookkeeping task failed: %s", task.exception())

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for run in self._runs.values():
            if run.timer is not None:
                run.timer.cancel()


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _start_message(req: Execute) -> Message:
    if req.mode == "query":
        return RunQuery(run_id=req.run_id, code=req.code)
    opts = req.options or {}
    return RunBatch(run_id=req.run_id, clean=opts.get("clean"), build=opts.get("build"),
                    exec=opts.get("exec"))
