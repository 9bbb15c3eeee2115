"""Web terminals (stream kind "pty"): one shell per (kernel, terminal name), kept here.

A terminal is the runner's PTY (``PtyOpen``/``PtyInput``/``PtyResize``/``PtyClose`` →
``PtyOutput``/``PtyClosed``, kernels/runner/ptys.py) under a runner stream id of its own
(name and generation). It is created by the first stream that attaches and stays when
every stream detached; a stream that attaches gets the last ``PTY_SCROLLBACK_BYTES`` of
output first, then live output; every attached stream sees all output. When the shell
exits a new one is started and the attached streams get a note line (a shell that keeps
exiting at once is given up: its streams are closed). ``{"type": "restart"}`` hangs up
the shell and starts a fresh one; stdin and ``{"type": "ping"}`` count as activity.

Backpressure: the runner and the other clients are never slowed. Output for one client
waits in its queue up to ``PTY_PENDING_BYTES``; beyond that it is dropped, and once the
client has caught up with what was queued before the drop it gets a note saying how many
bytes it lost. Terminals die with their kernel (``Terminals.close``).
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from agent.streams import StreamClosed, StreamSink
from common.errors import InvalidAPIParameters, KrakenError, RateLimitExceeded
from common.msg_runner import Message, PtyClose, PtyClosed, PtyInput, PtyOpen, PtyOutput, PtyResize
from common.streams import DEFAULT_TERM, PROXY_READ_BYTES, PTY_PENDING_BYTES, PTY_SCROLLBACK_BYTES
from common.tasks import spawn_into

if TYPE_CHECKING:
    from agent.kernels import Kernel

log = logging.getLogger(__name__)

SendFn = Callable[[Message], Awaitable[None]]
TERM_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
MAX_TERMINALS = 8  # per kernel
MAX_CLIENTS = 16  # streams attached to one terminal at once
SEND_CHUNK = PROXY_READ_BYTES  # terminal output in one stream-data
MARKER_COST = 64  # what a drop marker counts for in a client's queue
QUICK_EXIT = 1.0  # a shell that lived less than this many seconds exited "at once"
MAX_QUICK_EXITS = 5  # in a row, then the terminal is given up
GIVEN_UP = "the terminal's shell keeps exiting at once"


def dropped_note(n: int) -> bytes:
    return (f"\r\n[kraken: {n} bytes of output dropped: the terminal client reads too "
            "slowly]\r\n").encode()


def _size(rows: Any, cols: Any) -> tuple[int, int] | None:
    if isinstance(rows, int) and isinstance(cols, int) and 0 < rows < 65536 \
            and 0 < cols < 65536 and not isinstance(rows, bool):
        return rows, cols
    return None


class TermClient:
    """One attached stream: its queue of output, and the task that sends it."""

    def __init__(self, terminal: Terminal, sink: StreamSink) -> None:
        self.terminal = terminal
        self._sink = sink
        self._queue: collections.deque[bytes | int] = collections.deque()  # int: dropped
        self._queued = 0  # bytes counted against PTY_PENDING_BYTES
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._send_loop())

    def push(self, data: bytes) -> None:
        """Queue output, or count it dropped when the queue is full: never waits."""
        if not data:
            return
        if self._queued + len(data) > PTY_PENDING_BYTES:
            if self._queue and isinstance(self._queue[-1], int):
                self._queue[-1] += len(data)
            else:
                self._queue.append(len(data))
                self._queued += MARKER_COST
        else:
            self._queue.append(data)
            self._queued += len(data)
        self._wake.set()

    def _take(self) -> bytes:
        """Queued bytes up to ``SEND_CHUNK``, or the note for a run of dropped output."""
        head = self._queue[0]
        if isinstance(head, int):
            self._queue.popleft()
            self._queued -= MARKER_COST
            return dropped_note(head)
        parts: list[bytes] = []
        size = 0
        while self._queue and isinstance(self._queue[0], bytes):
            chunk = self._queue[0]
            assert isinstance(chunk, bytes)
            if size + len(chunk) > SEND_CHUNK:
                if size == 0:  # a piece larger than a chunk: split it
                    self._queue[0] = chunk[SEND_CHUNK:]
                    parts.append(chunk[:SEND_CHUNK])
                    size = SEND_CHUNK
                break
            parts.append(self._queue.popleft())  # type: ignore[arg-type]
            size += len(chunk)
        self._queued -= size
        return b"".join(parts)

    async def _send_loop(self) -> None:
        try:
            while True:
                if not self._queue:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                await self._sink.send_data(self._take())
        except StreamClosed:
            self.terminal.detach(self)

    async def close_stream(self, reason: str) -> None:
        with contextlib.suppress(StreamClosed):
            await self._sink.close(reason)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class Terminal:
    """One named shell of a kernel and the clients attached to it."""

    def __init__(self, owner: Terminals, name: str, rows: int, cols: int) -> None:
        self._owner = owner
        self.name = name
        self.rows, self.cols = rows, cols
        self.clients: set[TermClient] = set()
        self.scrollback = bytearray()
        self.generation = 0
        self.runner_id = ""
        self._spawned_at = 0.0
        self._quick_exits = 0

    async def spawn(self) -> None:
        self.generation += 1
        self.runner_id = f"{self.name}.{self.generation}"
        self._owner.by_runner_id[self.runner_id] = self
        self._spawned_at = time.monotonic()
        await self._owner.send(PtyOpen(stream_id=self.runner_id, rows=self.rows,
                                       cols=self.cols))

    def on_output(self, data: bytes) -> None:
        self.scrollback += data
        if len(self.scrollback) > PTY_SCROLLBACK_BYTES:
            del self.scrollback[:len(self.scrollback) - PTY_SCROLLBACK_BYTES]
        for client in self.clients:
            client.push(data)

    async def on_closed(self, exit_code: int) -> None:
        self._owner.by_runner_id.pop(self.runner_id, None)
        quick = time.monotonic() - self._spawned_at < QUICK_EXIT
        self._quick_exits = self._quick_exits + 1 if quick else 0
        if self._quick_exits >= MAX_QUICK_EXITS:
            log.warning("terminal %s: %s; giving up", self.name, GIVEN_UP)
            self.broadcast(f"\r\n[kraken: {GIVEN_UP}; no new shell is started]\r\n".encode())
            await self._owner.give_up(self)
            return
        self.broadcast(f"\r\n[kraken: the shell exited (code {exit_code}); a new one is "
                       "started]\r\n".encode())
        await self.spawn()

    def broadcast(self, data: bytes) -> None:
        self.on_output(data)

    async def restart(self) -> None:
        """Hang up the shell and start a fresh one at once (output of the old one, which
        may still come, is ignored)."""
        old = self.runner_id
        self._owner.by_runner_id.pop(old, None)
        self._quick_exits = 0
        await self._owner.send(PtyClose(stream_id=old))
        self.broadcast(b"\r\n[kraken: the shell was restarted]\r\n")
        await self.spawn()

    async def write(self, data: bytes) -> None:
        await self._owner.send(PtyInput(stream_id=self.runner_id, data=data))

    async def resize(self, rows: int, cols: int) -> None:
        if (rows, cols) != (self.rows, self.cols):
            self.rows, self.cols = rows, cols
            await self._owner.send(PtyResize(stream_id=self.runner_id, rows=rows, cols=cols))

    def attach(self, sink: StreamSink) -> TermClient:
        client = TermClient(self, sink)
        client.push(bytes(self.scrollback))
        self.clients.add(client)
        client.start()
        return client

    def detach(self, client: TermClient) -> None:
        self.clients.discard(client)


class Terminals:
    """The terminals of one kernel, fed by its runner's PTY messages."""

    def __init__(self, send: SendFn) -> None:
        self.send = send
        self.by_name: dict[str, Terminal] = {}
        self.by_runner_id: dict[str, Terminal] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = False

    async def attach(self, name: str, rows: int, cols: int,
                     sink: StreamSink) -> TermClient:
        terminal = self.by_name.get(name)
        if terminal is None:
            if len(self.by_name) >= MAX_TERMINALS:
                raise InvalidAPIParameters(f"a session has at most {MAX_TERMINALS} terminals")
            terminal = self.by_name[name] = Terminal(self, name, rows, cols)
            try:
                await terminal.spawn()
            except BaseException:
                self.by_name.pop(name, None)
                raise
        elif len(terminal.clients) >= MAX_CLIENTS:
            raise RateLimitExceeded(f"terminal {name} has {MAX_CLIENTS} clients already")
        else:
            await terminal.resize(rows, cols)
        return terminal.attach(sink)

    def on_runner_message(self, msg: Message) -> None:
        """A ``PtyOutput`` or ``PtyClosed`` from the runner (never waits)."""
        terminal = self.by_runner_id.get(getattr(msg, "stream_id", ""))
        if terminal is None or self.closed:
            return  # an old shell (restarted), or a terminal given up
        if isinstance(msg, PtyOutput) and isinstance(msg.data, bytes):
            terminal.on_output(msg.data)
        elif isinstance(msg, PtyClosed):
            code = msg.exit_code if isinstance(msg.exit_code, int) else -1
            self._spawn(terminal.on_closed(code))

    async def give_up(self, terminal: Terminal) -> None:
        self.by_name.pop(terminal.name, None)
        for client in list(terminal.clients):
            terminal.detach(client)
            await client.close_stream(GIVEN_UP)
            await client.stop()

    def _spawn(self, coro: Awaitable[None]) -> None:
        spawn_into(self._tasks, coro, log, "terminal task")

    async def close(self) -> None:
        """The kernel is gone or restarts: forget every terminal (the container's shells
        go with it; the stream table closes the streams)."""
        self.closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for terminal in self.by_name.values():
            for client in list(terminal.clients):
                terminal.detach(client)
                await client.stop()
        self.by_name.clear()
        self.by_runner_id.clear()


class PtyStream:
    """The stream handler of one attached terminal client."""

    def __init__(self, kernel: Kernel, client: TermClient) -> None:
        self._kernel = kernel
        self._client = client

    async def on_data(self, data: bytes) -> None:
        self._kernel.touch()
        try:
            await self._client.terminal.write(data)
        except KrakenError as e:  # the runner is unreachable: the input is lost
            log.warning("terminal %s: input lost: %s", self._client.terminal.name, e)

    async def on_control(self, body: dict[str, Any]) -> None:
        kind = body.get("type")
        if kind == "ping":
            self._kernel.touch()
        elif kind == "restart":
            self._kernel.touch()
            await self._client.terminal.restart()
        else:
            log.info("terminal %s: ignoring control %r", self._client.terminal.name, kind)

    async def on_resize(self, rows: int, cols: int) -> None:
        size = _size(rows, cols)
        if size is not None:
            await self._client.terminal.resize(*size)

    async def on_close(self, reason: str) -> None:
        self._client.terminal.detach(self._client)
        await self._client.stop()


async def start_pty(kernel: Kernel, params: dict[str, Any],
                    sink: StreamSink) -> tuple[PtyStream, dict[str, Any]]:
    """The "pty" kind's starter (agent/stream_kinds.py)."""
    name = params.get("term", DEFAULT_TERM)
    if not isinstance(name, str) or not TERM_NAME.fullmatch(name):
        raise InvalidAPIParameters("term must be 1-64 letters, digits, '.', '_' or '-'")
    size = _size(params.get("rows", 24), params.get("cols", 80))
    if size is None:
        raise InvalidAPIParameters("rows and cols must be integers from 1 to 65535")
    kernel.touch()
    client = await kernel.terminals.attach(name, size[0], size[1], sink)
    return PtyStream(kernel, client), {"term": name}
