"""The run state machine of one kernel (seed 004 §2.10 execute model, §2.9.6 results).

A *run* starts with an ``Execute`` in mode query or batch and lasts until the runner
reports the exec phase finished. Runs are served in FIFO order: one is active in the
runner, the rest wait. Each execute call waits — on futures, never by polling — for
the run's next *milestone* (clean/build/exec finished, waiting for input, timeout)
or for its flush timeout, and returns the console produced since the previous call.

Output is held under one rule (``common.console``): what a run holds between two calls
is bounded per run and per kernel (``OutputLimits``, agent config ``[runs]``), counted
in bytes over every console item kind; beyond that, items are dropped as they arrive
and the result says what was dropped. A run's state is freed when its final result is
collected, when it is evicted unread, and when the kernel ends (``close``).

A run started by an execute stream (``start_streamed``) has a ``RunLog`` instead of a
reader: every console batch and milestone goes into the log as soon as the runner sends
it, taken by the same rule a REST call takes them (``_take``), and the streams read the
log (agent/run_log.py, agent/stream_runs.py). Streamed and REST runs share the FIFO.
"""
from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from agent.run_log import RunLog, result_bodies
from common.console import ConsoleWindow
from common.errors import InvalidAPIParameters, KrakenError, RunNotFound
from common.limits import KERNEL_OUTPUT_BYTES, RUN_OUTPUT_BYTES
from common.msg_agent import Execute, ExecuteResult
from common.msg_runner import (
    ConsoleOutput,
    FeedInput,
    Message,
    RunBatch,
    RunFinished,
    RunnerStatus,
    RunQuery,
    WaitingInput,
)
from common.streams import EXECUTE_LOG_LINGER
from common.tasks import spawn_into

log = logging.getLogger(__name__)

KEEP_FINISHED = 16
KEEP_LOGS = 64  # finished run logs lingering for streams to resume, per kernel
_PHASE_STATUS = {"clean": "clean-finished", "build": "build-finished", "exec": "finished"}
FINAL_STATUSES = frozenset({"finished", "exec-timeout"})
REATTACHED_NOTE = ("[kraken: the agent restarted during this run; output it had received "
                   "but not yet returned may be missing here]\n")
UNKNOWN_RUNNER_NOTE = ("[kraken: the agent restarted and the runner could not say whether a "
                       "run started before is still going; this run may wait behind it]\n")

SendFn = Callable[[Message], Awaitable[None]]
InterruptFn = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class OutputLimits:
    """Console bytes held between two execute calls: per run, and per kernel (all runs)."""

    run_bytes: int = RUN_OUTPUT_BYTES
    kernel_bytes: int = KERNEL_OUTPUT_BYTES


@dataclass
class Milestone:
    status: str
    exit_code: int | None
    options: dict[str, Any] | None
    window: ConsoleWindow


@dataclass
class Run:
    run_id: str
    start_msg: Message
    window: ConsoleWindow = field(default_factory=ConsoleWindow)
    held: int = 0  # console bytes held in ``window`` and the milestones' windows
    milestones: collections.deque[Milestone] = field(default_factory=collections.deque)
    waiter: asyncio.Future[None] | None = None
    started: bool = False
    done: bool = False  # the runner is through with it
    timed_out: bool = False
    timer: asyncio.TimerHandle | None = None
    awaiting_input: bool = False  # a waiting-input milestone is out, no input fed since
    log: RunLog | None = None  # a streamed run: its events go here, not to execute calls

    def wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def add_milestone(self, status: str, exit_code: int | None,
                      options: dict[str, Any] | None = None) -> None:
        self.milestones.append(Milestone(status, exit_code, options, self.window))
        self.window = ConsoleWindow()
        self.wake()


class KernelRuns:
    """All runs of one kernel: the FIFO, the active run, and results waiting to be read."""

    def __init__(self, send: SendFn, interrupt: InterruptFn, exec_timeout: float = 0.0,
                 limits: OutputLimits | None = None, recovered: bool = False,
                 log_linger: float = EXECUTE_LOG_LINGER) -> None:
        """``recovered``: this agent re-adopted a running container, so output may come
        for runs an earlier agent process started; they are kept (see ``reattach``)."""
        self._send = send
        self._recovered = recovered
        self._adopted: collections.deque[str] = collections.deque()
        self._unknown_note = False
        self._interrupt = interrupt
        self._exec_timeout = exec_timeout
        self._limits = limits or OutputLimits()
        self._held = 0  # console bytes held by all runs together
        self._runs: dict[str, Run] = {}
        self._queue: collections.deque[Run] = collections.deque()
        self._active: Run | None = None
        self._finished: collections.deque[str] = collections.deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._logs: dict[str, RunLog] = {}  # streamed runs' logs, oldest first
        self._logged = 0  # bytes in all logs together
        self._log_linger = log_linger

    @property
    def active_run_id(self) -> str | None:
        return self._active.run_id if self._active else None

    @property
    def held_bytes(self) -> int:
        """Console bytes held for runs, waiting to be collected."""
        return self._held

    @property
    def run_count(self) -> int:
        """Runs known to this kernel (queued, active, or finished and not yet collected)."""
        return len(self._runs)

    async def execute(self, req: Execute) -> ExecuteResult:
        """Serve one execute call."""
        if req.mode in ("query", "batch"):
            run = await self._submit(req)
        elif req.mode in ("continue", "input"):
            run = self._runs.get(req.run_id) or self._unknown(req.run_id)
            if req.mode == "input":
                await self.feed_input(req.run_id, req.code)
            elif run.log is not None:
                raise InvalidAPIParameters(f"run {req.run_id} is streamed: resume its stream")
        else:
            raise InvalidAPIParameters(f"unknown execute mode {req.mode!r}")
        return await self._collect(run, req.flush_timeout)

    async def feed_input(self, run_id: str, text: str) -> None:
        """Answer the prompt of the active run (REST mode input, or a stream's input)."""
        run = self._runs.get(run_id) or self._unknown(run_id)
        if run is not self._active:
            raise InvalidAPIParameters(f"run {run_id} is not waiting for input")
        await self._send(FeedInput(run_id=run.run_id, text=text))
        run.awaiting_input = False

    async def start_streamed(self, req: Execute) -> RunLog:
        """Queue a run whose events go to a ``RunLog`` for streams to read."""
        if req.mode not in ("query", "batch"):
            raise InvalidAPIParameters(f"a stream cannot start a run in mode {req.mode!r}")
        log = RunLog(req.run_id, self._limits.run_bytes)
        await self._submit(req, log)
        return log

    def log_of(self, run_id: str) -> RunLog:
        """The log of a streamed run, running or finished within the linger time."""
        log = self._logs.get(run_id)
        if log is None:
            raise RunNotFound(f"run {run_id!r} is not a streamed run of this kernel, or its "
                              "output is no longer kept")
        return log

    @staticmethod
    def _unknown(run_id: str) -> Run:
        raise InvalidAPIParameters(f"unknown runId {run_id!r}")

    async def _submit(self, req: Execute, log: RunLog | None = None) -> Run:
        if req.run_id in self._runs or req.run_id in self._logs:
            raise InvalidAPIParameters(f"run {req.run_id} already exists; use mode continue")
        run = Run(run_id=req.run_id, start_msg=_start_message(req), log=log)
        if log is not None:
            self._logs[req.run_id] = log
        if self._unknown_note:
            self._unknown_note = False
            self._note(run, UNKNOWN_RUNNER_NOTE)
        self._runs[run.run_id] = run
        self._queue.append(run)
        self._flush_log(run)
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
        m = self._take(run) or Milestone("continued", None, None, ConsoleWindow())
        return _result(run.run_id, m.status, m.window, m.exit_code, m.options)

    def _take(self, run: Run) -> Milestone | None:
        """The run's next milestone, else the console since the last take ("continued");
        None if there is nothing. A final milestone forgets the run."""
        if run.milestones:
            m = run.milestones.popleft()
            self._release(run, m.window.size)
            if m.status in FINAL_STATUSES:
                self._forget(run)
            return m
        if not run.window:
            return None
        window, run.window = run.window, ConsoleWindow()
        self._release(run, window.size)
        return Milestone("continued", None, None, window)

    # ---- streamed runs: the log ----------------------------------------------------

    def _flush_log(self, run: Run) -> None:
        """Move what a streamed run has to its log, as events, at once."""
        log = run.log
        if log is None or log.done or log.freed:
            return
        while (m := self._take(run)) is not None:
            for body in result_bodies(m.status, m.window.items(), m.exit_code, m.options):
                log.append(body)
            if m.status in FINAL_STATUSES:
                log.finish()
                loop = asyncio.get_running_loop()
                log.expiry = loop.call_later(self._log_linger, self._expire, log)
                break
        self._trim_logs()

    def _trim_logs(self) -> None:
        """Keep all logs within the kernel's output budget and count: finished logs go
        first, oldest first; the oldest events of the others then."""
        self._logged = sum(log.bytes for log in self._logs.values())
        finished = [log for log in self._logs.values() if log.done]
        while finished and (len(finished) > KEEP_LOGS
                            or self._logged > self._limits.kernel_bytes):
            self._expire(finished.pop(0))
        for log in list(self._logs.values()):
            while self._logged > self._limits.kernel_bytes and len(log.events) > 1:
                self._logged -= log.evict_oldest()

    def _expire(self, log: RunLog) -> None:
        if self._logs.get(log.run_id) is log:
            del self._logs[log.run_id]
        self._logged -= log.free()

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
        if self._runs.get(run.run_id) is run:
            del self._runs[run.run_id]
        self._release(run, run.held)

    def _release(self, run: Run, size: int) -> None:
        size = min(size, run.held)
        run.held -= size
        self._held -= size

    # ---- runner events -------------------------------------------------------------

    def on_runner_message(self, msg: Message) -> None:
        """Feed one message from the runner's output socket."""
        run_id = getattr(msg, "run_id", "")
        run = self._runs.get(run_id)
        if run is None and self._active is not None and self._active.run_id == run_id:
            run = self._active  # timed out and already reported, still running
        if run is None and self._recovered and run_id:
            run = self._adopt(run_id)
        if run is None:
            log.debug("dropping %s for an unknown run", msg.msg_type)
            return
        if isinstance(msg, ConsoleOutput):
            self._hold(run, msg)
        elif isinstance(msg, WaitingInput):
            self._awaits_input(run, msg.is_password)
        elif isinstance(msg, RunFinished):
            self._on_finished(run, msg)
        self._flush_log(run)

    # ---- runs an earlier agent process started (agent restart) -----------------------

    def _adopt(self, run_id: str) -> Run:
        """A run this agent did not start: known, but not active until the runner's
        status says so (output of a thread left behind by a finished run must never
        make a run that blocks the FIFO)."""
        run = Run(run_id=run_id, start_msg=RunQuery(run_id=run_id, code=""), started=True)
        self._runs[run_id] = run
        self._adopted.append(run_id)
        while len(self._adopted) > KEEP_FINISHED:
            old = self._runs.get(self._adopted.popleft())
            if old is not None and old is not self._active and old is not run:
                self._runs.pop(old.run_id, None)
        return run

    def reattach(self, status: RunnerStatus | None) -> None:
        """Take back the run the runner is executing, as its status reports it: the next
        ``continue`` on its run id gets its later output. ``None`` (a runner that cannot
        say): a note tells the next run that it may wait behind an unseen one."""
        if status is None:
            self._unknown_note = True
            return
        if not status.run_id or status.state == "idle":
            return
        run = self._runs.get(status.run_id) or self._adopt(status.run_id)
        if run.done or self._active is not None:
            return
        self._active = run
        log.info("re-attached run %s (%s)", run.run_id, status.state)
        self._note(run, REATTACHED_NOTE)
        if status.state == "waiting-input":
            self._awaits_input(run, status.is_password)

    def _note(self, run: Run, text: str) -> None:
        """A stderr line of ours in the run's output, counted against its budgets."""
        room = max(min(self._limits.run_bytes - run.held,
                       self._limits.kernel_bytes - self._held), 0)
        size = run.window.add(["stderr", text], room)
        run.held += size
        self._held += size

    @staticmethod
    def _awaits_input(run: Run, is_password: bool) -> None:
        """Once per prompt, whether the message or the runner's status tells it first."""
        if not run.awaiting_input:
            run.awaiting_input = True
            run.add_milestone("waiting-input", None, {"is_password": is_password})

    def _hold(self, run: Run, msg: ConsoleOutput) -> None:
        """Keep what fits the run's and the kernel's budgets; count the rest as dropped."""
        if self._runs.get(run.run_id) is not run:
            return  # its final result was collected: nobody can read more of it
        items = msg.items if isinstance(msg.items, list) else [msg.items]
        limits = self._limits
        for item in items:
            room = min(limits.run_bytes - run.held, limits.kernel_bytes - self._held)
            size = run.window.add(item, max(room, 0))
            run.held += size
            self._held += size
        run.window.note_dropped(msg.dropped)

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
            run.window.append_note(note)
        run.done = True
        if self._active is run:
            self._active = None
        if add:
            run.add_milestone("finished", exit_code)
        self._flush_log(run)
        self._finished.append(run.run_id)
        while len(self._finished) > KEEP_FINISHED:  # results nobody came back for
            old = self._runs.get(self._finished.popleft())
            if old is not None and old.done and old is not run:
                self._forget(old)

    def _on_timeout(self, run: Run) -> None:
        if run.done or run.timed_out:
            return
        run.timed_out = True
        run.add_milestone("exec-timeout", None)
        self._flush_log(run)
        self._spawn(self._interrupt())

    def fail_all(self, note: str) -> None:
        """The container died: every unfinished run ends with exit code -1."""
        pending = [r for r in self._runs.values() if not r.done]
        self._queue.clear()
        self._active = None
        for run in pending:
            self._finish(run, -1, f"\n[kraken: {note}]\n")

    def _spawn(self, coro: Awaitable[None]) -> None:
        spawn_into(self._tasks, coro, log, "run bookkeeping task")

    async def close(self) -> None:
        """The kernel is gone: cancel bookkeeping and free every run's state.

        Calls still waiting on a run keep that one run until they return."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for run in self._runs.values():
            if run.timer is not None:
                run.timer.cancel()
            run.held = 0
            run.wake()
        self._runs.clear()
        self._queue.clear()
        self._finished.clear()
        self._active = None
        self._held = 0
        for log in list(self._logs.values()):
            self._expire(log)


def _result(run_id: str, status: str, window: ConsoleWindow, exit_code: int | None = None,
            options: dict[str, Any] | None = None) -> ExecuteResult:
    return ExecuteResult(run_id=run_id, status=status, exit_code=exit_code, options=options,
                         console=window.items(), dropped=dict(window.dropped))


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _start_message(req: Execute) -> Message:
    if req.mode == "query":
        return RunQuery(run_id=req.run_id, code=req.code)
    opts = req.options or {}
    return RunBatch(run_id=req.run_id, clean=opts.get("clean"), build=opts.get("build"),
                    exec=opts.get("exec"))
