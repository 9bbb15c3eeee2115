"""The runner process: its sockets, the I/O thread, the dispatch table, the main loop.

The I/O thread owns every ZeroMQ socket and PTY fd. It decodes input messages and
dispatches them through ``handlers[msg_type]``; execute requests become jobs for
the main thread, which runs them one at a time (query code must run in the main
thread so SIGINT interrupts it). Control requests (ping, interrupt, shutdown) are
answered by the I/O thread at once, never queued behind a job.
"""
from __future__ import annotations

import builtins
import getpass
import os
import queue
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable
from types import FrameType

import zmq

from common.codec import Message, WireFormatError
from common.limits import MAX_MESSAGE_BYTES, MAX_OUTPUT_MESSAGE_BYTES, OUTPUT_RCVHWM
from common.msg_runner import (
    RUNNER_PROTOCOL,
    Complete,
    Completions,
    ControlAck,
    FeedInput,
    GetStatus,
    Interrupt,
    Ping,
    PtyClose,
    PtyClosed,
    PtyInput,
    PtyOpen,
    PtyResize,
    RunBatch,
    RunFinished,
    RunnerReady,
    RunnerStatus,
    RunQuery,
    ServiceStatus,
    Shutdown,
    StartService,
)
from kernels.runner.batch import BatchRunner
from kernels.runner.console import ConsoleWriter, CurrentRun, InputBroker
from kernels.runner.outbox import Outbox
from kernels.runner.ptys import PtyError, PtyTable
from kernels.runner.query import QueryEngine, Terminate
from kernels.runner.services import ServiceTable
from kernels.runner.settings import Settings, SettingsError

FEATURES = ["query", "batch", "completion", "interrupt", "user-input", "pty", "media"]
FINAL_FLUSH_TRIES = 100
POLL_MS = 1000  # only bounds how late zombies are reaped; all real work wakes the poll
Job = Callable[[], None]


def _log(text: str) -> None:
    print(f"kraken-runner: {text}", file=sys.__stderr__, flush=True)


class Runner:
    """One runner process: call ``serve()`` from the main thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.outbox = Outbox()
        self.current = CurrentRun()
        self.inputs = InputBroker(self.outbox, self.current)
        self.query = QueryEngine()
        self.children: set[int] = set()
        self.batch = BatchRunner(settings, self.outbox, self._track_child)
        self.ptys = PtyTable(settings.workdir)
        self.services = ServiceTable(settings.services_dir, settings.workdir)
        self.jobs: queue.Queue[Job | None] = queue.Queue()
        self.stopping = threading.Event()  # no new jobs; the main loop ends
        self.io_done = threading.Event()  # set by the main thread once jobs are over
        self.busy = threading.Lock()  # held by the main thread while a job runs
        self.active_run = ""  # the run the main thread executes ("" between runs)
        self._pending: deque[tuple[bytes, int]] = deque()  # (frame, console bytes in it)
        self.handlers: dict[str, Callable[[Message], None]] = {
            RunQuery.msg_type: self._on_run_query,
            RunBatch.msg_type: self._on_run_batch,
            FeedInput.msg_type: self._on_feed_input,
            Complete.msg_type: self._on_complete,
            PtyOpen.msg_type: self._on_pty_open,
            PtyInput.msg_type: self._on_pty_input,
            PtyResize.msg_type: self._on_pty_resize,
            PtyClose.msg_type: self._on_pty_close,
        }
        self.control_handlers: dict[str, Callable[[Message], Message]] = {
            Ping.msg_type: lambda _msg: ControlAck(ok=True, detail="pong"),
            Interrupt.msg_type: self._on_interrupt,
            Shutdown.msg_type: self._on_shutdown,
            GetStatus.msg_type: self._on_get_status,
            StartService.msg_type: self._on_start_service,
        }
        self.ctx = zmq.Context()
        self.input_sock = self._bind(zmq.PULL, settings.input_endpoint, MAX_MESSAGE_BYTES)
        self.output_sock = self._bind(zmq.PUSH, settings.output_endpoint,
                                      MAX_OUTPUT_MESSAGE_BYTES)
        # Sent frames count against nothing here, so ZeroMQ may hold only a few: the rest
        # waits in ``_pending``, whose console bytes the outbox bounds.
        self.output_sock.setsockopt(zmq.SNDHWM, OUTPUT_RCVHWM)
        self.control_sock = self._bind(zmq.ROUTER, settings.control_endpoint,
                                       MAX_OUTPUT_MESSAGE_BYTES)

    def _bind(self, kind: int, endpoint: str, max_message: int) -> zmq.Socket:
        sock = self.ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 500)
        sock.setsockopt(zmq.MAXMSGSIZE, max_message)
        sock.bind(endpoint)
        return sock

    def _track_child(self, pid: int, alive: bool) -> None:
        (self.children.add if alive else self.children.discard)(pid)

    # ---- input handlers (I/O thread) ---------------------------------------------

    def _on_run_query(self, msg: Message) -> None:
        assert isinstance(msg, RunQuery)
        self.jobs.put(lambda: self._run_query(msg))

    def _on_run_batch(self, msg: Message) -> None:
        assert isinstance(msg, RunBatch)
        self.jobs.put(lambda: self._run_batch(msg))

    def _on_feed_input(self, msg: Message) -> None:
        assert isinstance(msg, FeedInput)
        self.inputs.feed(msg.run_id, msg.text)

    def _on_complete(self, msg: Message) -> None:
        assert isinstance(msg, Complete)
        self.outbox.message(Completions(req_id=msg.req_id, items=self.query.complete(msg.code)))

    def _on_pty_open(self, msg: Message) -> None:
        assert isinstance(msg, PtyOpen)
        self.ptys.open(msg.stream_id, msg.rows, msg.cols)

    def _on_pty_input(self, msg: Message) -> None:
        assert isinstance(msg, PtyInput)
        self.ptys.write(msg.stream_id, msg.data)

    def _on_pty_resize(self, msg: Message) -> None:
        assert isinstance(msg, PtyResize)
        self.ptys.resize(msg.stream_id, msg.rows, msg.cols)

    def _on_pty_close(self, msg: Message) -> None:
        assert isinstance(msg, PtyClose)
        self.ptys.close(msg.stream_id)

    # ---- control handlers (I/O thread) -------------------------------------------

    def _on_interrupt(self, _msg: Message) -> ControlAck:
        if self.batch.interrupt():
            return ControlAck(ok=True, detail="interrupted batch step")
        if self.query.in_user_code:
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
            return ControlAck(ok=True, detail="interrupted")
        return ControlAck(ok=True, detail="nothing running")

    def _on_get_status(self, _msg: Message) -> RunnerStatus:
        waiting = self.inputs.waiting
        if waiting is not None:
            return RunnerStatus(run_id=waiting.run_id, state="waiting-input",
                                prompt=waiting.prompt, is_password=waiting.is_password)
        active = self.active_run
        return RunnerStatus(run_id=active, state="running") if active else RunnerStatus()

    def _on_start_service(self, msg: Message) -> ServiceStatus:
        assert isinstance(msg, StartService)
        return self.services.request(msg.name, bool(msg.probe))

    def _on_shutdown(self, _msg: Message) -> ControlAck:
        self.stopping.set()
        self.jobs.put(None)
        if self.busy.locked():
            self.batch.terminate()
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGTERM)
        return ControlAck(ok=True, detail="shutting down")

    # ---- jobs (main thread) --------------------------------------------------------

    def _run_query(self, msg: RunQuery) -> None:
        self.current.run_id = self.active_run = msg.run_id
        try:
            self.inputs.reset()
            self.query.run(msg.code)
            self.outbox.message(RunFinished(run_id=msg.run_id, phase="exec", exit_code=0))
        finally:
            self.active_run = ""

    def _run_batch(self, msg: RunBatch) -> None:
        self.current.run_id = self.active_run = msg.run_id
        try:
            self.batch.run(msg)
        finally:
            self.active_run = ""

    # ---- the I/O thread -------------------------------------------------------------

    def io_loop(self) -> None:
        """Serve the sockets until ``io_done``, then flush what is left (bounded)."""
        try:
            while not self.io_done.is_set():
                self._io_step()
            self._queue_out(self.outbox.drain())
            for _ in range(FINAL_FLUSH_TRIES):
                if not self._pending or not self.output_sock.poll(10, zmq.POLLOUT):
                    break
                self._flush()
        except Exception as e:  # noqa: BLE001 — a bug must not leave a half-dead runner
            _log(f"I/O thread failed: {e!r}")
            self.stopping.set()
            self.jobs.put(None)

    def _io_step(self) -> None:
        poller = zmq.Poller()
        poller.register(self.input_sock, zmq.POLLIN)
        poller.register(self.control_sock, zmq.POLLIN)
        poller.register(self.outbox.wake_fd, zmq.POLLIN)
        if self._pending:
            poller.register(self.output_sock, zmq.POLLOUT)
        writing = set(self.ptys.fds_to_write)
        for fd in self.ptys.fds:
            poller.register(fd, zmq.POLLIN | (zmq.POLLOUT if fd in writing else 0))
        ready = dict(poller.poll(POLL_MS))
        if self.control_sock in ready:
            self._serve_control()
        if self.input_sock in ready:
            self._serve_input()
        for fd in self.ptys.fds:
            events = ready.get(fd, 0)
            if events & zmq.POLLOUT:
                self.ptys.on_writable(fd)
            if events & (zmq.POLLIN | zmq.POLLERR):
                self._queue_out([(m, 0) for m in self.ptys.on_readable(fd)])
        if self.outbox.wake_fd in ready:
            self._queue_out(self.outbox.drain())
        self._flush()
        if not ready:
            self.services.reap()
            self._reap_orphans()

    def _serve_input(self) -> None:
        while True:
            try:
                frame = self.input_sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                msg, _corr = RUNNER_PROTOCOL.decode(frame)
                handler = self.handlers.get(msg.msg_type)
                if handler is None:
                    raise WireFormatError(f"{msg.msg_type} is not an input message")
                handler(msg)
            except (WireFormatError, PtyError, OSError) as e:
                _log(f"dropped an input message: {e}")
                self._report_pty_failure(frame, e)

    def _report_pty_failure(self, frame: bytes, error: Exception) -> None:
        """A PTY stream that failed to open is reported closed, so no client waits on it."""
        if isinstance(error, WireFormatError):
            return
        msg, _ = RUNNER_PROTOCOL.decode(frame)
        if isinstance(msg, PtyOpen) and not self.ptys.has(msg.stream_id):
            self.outbox.message(PtyClosed(stream_id=msg.stream_id, exit_code=127))

    def _serve_control(self) -> None:
        while True:
            try:
                frames = self.control_sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) < 2:
                continue
            try:
                msg, corr_id = RUNNER_PROTOCOL.decode(frames[-1])
                handler = self.control_handlers.get(msg.msg_type)
                reply: Message = (
                    handler(msg) if handler is not None else
                    ControlAck(ok=False, detail=f"not a control message: {msg.msg_type}"))
            except WireFormatError as e:
                corr_id, reply = 0, ControlAck(ok=False, detail=str(e))
            frames[-1] = RUNNER_PROTOCOL.encode(reply, -corr_id)
            self.control_sock.send_multipart(frames)

    def _queue_out(self, messages: list[tuple[Message, int]]) -> None:
        for msg, size in messages:
            try:
                self._pending.append((RUNNER_PROTOCOL.encode(msg), size))
            except (TypeError, ValueError) as e:  # user code emitted what msgpack cannot carry
                _log(f"dropped an unencodable {msg.msg_type}: {e}")
                self.outbox.release(size)

    def _flush(self) -> None:
        while self._pending:
            frame, size = self._pending[0]
            try:
                self.output_sock.send(frame, zmq.NOBLOCK)
            except zmq.Again:
                return
            self._pending.popleft()
            self.outbox.release(size)

    def _reap_orphans(self) -> None:
        """As PID 1 (no init in the container), reap children nobody else waits for."""
        if os.getpid() != 1:
            return
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None or info.si_pid in self.children or self.ptys.owns(info.si_pid) \
                    or self.services.owns(info.si_pid):
                return
            os.waitpid(info.si_pid, 0)

    # ---- the main thread ------------------------------------------------------------

    def install_console(self) -> None:
        """Route stdout/stderr, ``input()`` and ``getpass`` to the client."""
        sys.stdout = ConsoleWriter(self.outbox, self.current, "stdout")
        sys.stderr = ConsoleWriter(self.outbox, self.current, "stderr")
        builtins.input = self.inputs.input
        getpass.getpass = self.inputs.getpass  # type: ignore[assignment]

    def _on_sigint(self, _signum: int, _frame: FrameType | None) -> None:
        if self.query.in_user_code:
            raise KeyboardInterrupt

    def _on_sigterm(self, _signum: int, _frame: FrameType | None) -> None:
        self.stopping.set()
        raise Terminate

    def serve(self) -> None:
        signal.signal(signal.SIGINT, self._on_sigint)
        signal.signal(signal.SIGTERM, self._on_sigterm)
        os.chdir(self.settings.workdir)
        sys.path.insert(0, str(self.settings.workdir))
        self.install_console()
        io_thread = threading.Thread(target=self.io_loop, name="runner-io", daemon=True)
        self.outbox.message(RunnerReady(protocol=RUNNER_PROTOCOL.version, features=FEATURES))
        io_thread.start()
        try:
            self._main_loop()
        except Terminate:
            pass
        finally:
            self.stopping.set()
            self.batch.terminate()
            self.io_done.set()
            self.outbox.wake()
            io_thread.join()
            self.ptys.close_all()
            self.services.close_all()
            self.close()

    def _main_loop(self) -> None:
        while not self.stopping.is_set():
            job = self.jobs.get()
            if job is None:
                return
            with self.busy:
                job()

    def close(self) -> None:
        for sock in (self.input_sock, self.output_sock, self.control_sock):
            sock.close()
        self.ctx.term()
        self.outbox.close()


def main() -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as e:
        _log(f"error: {e}")
        return 2
    try:
        runner = Runner(settings)
    except zmq.ZMQError as e:
        _log(f"error: cannot bind {settings.host}:{settings.port_base}..+2: {e}")
        return 2
    _log(f"listening on {settings.host}:{settings.port_base}-{settings.port_base + 2}")
    runner.serve()
    return 0
