"""The agent's streams (agent link v2): the table, credit-based flow control, the sink.

A manager replica starts a stream with ``stream-start``; the stream belongs to that
``ManagerSession`` (one connection): everything of it goes back on that connection, and
when the connection drops or joins again every stream of it gets
``on_close("manager connection lost")`` and is forgotten (the terminal or the run behind
it goes on). A kind's *starter* (registered in ``agent/stream_kinds.py``, the one place
kinds are looked up: "pty", "execute", and "proxy" from ``agent/proxy.py``) returns the
``StreamHandler`` that receives what the manager sends, and gets a ``StreamSink`` to send
back with.

Flow control, both ways (``common.streams``): the sink keeps at most ``WINDOW_BYTES`` of
``cost()`` in flight uncredited and waits for ``stream-credit`` beyond that (one message
larger than the window goes out alone, when nothing else is in flight); the agent returns
credit for ``stream-data`` once the handler's ``on_data`` returned. What a manager sends
is handled in order, one message at a time per stream, and a manager that sends more than
its window (plus slack for control messages) loses the stream.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from common.codec import Message
from common.errors import InvalidAPIParameters, KernelNotRunning, RateLimitExceeded
from common.msg_agent import (
    StreamClose,
    StreamControl,
    StreamCredit,
    StreamData,
    StreamEvent,
    StreamResize,
    StreamStart,
    StreamStarted,
)
from common.streams import WINDOW_BYTES, cost
from common.tasks import spawn_into

if TYPE_CHECKING:
    from agent.kernels import Kernel, KernelRegistry

log = logging.getLogger(__name__)

CONNECTION_LOST = "manager connection lost"
FLOW_VIOLATION = "the manager sent beyond its credit window"
CONTROL_COST = 64  # what a control or resize message counts for in the inbox bound
INBOX_BYTES = 2 * WINDOW_BYTES  # an honest manager never has more than one window queued
MAX_STREAMS = 1024  # open streams per agent, all connections together
STREAM_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
STREAM_MESSAGES = (StreamStart, StreamData, StreamResize, StreamControl, StreamCredit,
                   StreamClose)


class StreamClosed(Exception):
    """The stream ended (closed by either side, or its connection is gone)."""


class StreamSink(Protocol):
    """Given to a handler: its way back to the manager."""

    async def send_data(self, data: bytes) -> None: ...  # waits for credit
    async def send_event(self, seq: int, body: dict[str, Any]) -> None: ...  # waits for credit
    async def close(self, reason: str) -> None: ...  # ends the stream


class StreamHandler(Protocol):
    """What a kind's starter returns: it receives what the manager sends."""

    async def on_data(self, data: bytes) -> None: ...  # credit is returned after it returns
    async def on_control(self, body: dict[str, Any]) -> None: ...
    async def on_resize(self, rows: int, cols: int) -> None: ...
    async def on_close(self, reason: str) -> None: ...  # the client ended / connection lost


StreamStarter = Callable[["Kernel", dict[str, Any], StreamSink],
                         Awaitable[tuple[StreamHandler, dict[str, Any]]]]


class Connection(Protocol):
    """The manager connection a stream belongs to (``agent.manager_link.ManagerSession``)."""

    async def send_stream(self, msg: Message) -> bool: ...  # False: the connection is gone


class Credit:
    """The send window of one stream: ``acquire`` waits, ``release`` is ``stream-credit``."""

    def __init__(self, window: int = WINDOW_BYTES) -> None:
        self.window = window
        self.in_flight = 0
        self._changed = asyncio.Event()
        self.closed = False

    async def acquire(self, amount: int) -> None:
        while self.in_flight > 0 and self.in_flight + amount > self.window:
            if self.closed:
                raise StreamClosed()
            self._changed.clear()
            await self._changed.wait()
        if self.closed:
            raise StreamClosed()
        self.in_flight += amount

    def release(self, amount: int) -> None:
        if amount > 0:
            self.in_flight = max(self.in_flight - amount, 0)  # more credit than sent: ignored
            self._changed.set()

    def close(self) -> None:
        self.closed = True
        self._changed.set()


@dataclass
class Stream:
    stream_id: str
    kernel_id: str
    kind: str
    conn: Connection
    credit: Credit = field(default_factory=Credit)
    handler: StreamHandler | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # stream-started is out
    inbox: collections.deque[Message] = field(default_factory=collections.deque)
    inbox_bytes: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    worker: asyncio.Task[None] | None = None
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    closed: bool = False


class Sink:
    """The ``StreamSink`` of one stream."""

    def __init__(self, table: StreamTable, stream: Stream) -> None:
        self._table = table
        self._stream = stream

    async def send_data(self, data: bytes) -> None:
        s = self._stream
        await self._send(cost(data), StreamData(stream_id=s.stream_id, data=bytes(data)))

    async def send_event(self, seq: int, body: dict[str, Any]) -> None:
        s = self._stream
        await self._send(cost(body), StreamEvent(stream_id=s.stream_id, seq=seq, body=body))

    async def _send(self, amount: int, msg: Message) -> None:
        s = self._stream
        async with s.send_lock:  # in order, whatever the number of senders
            if not s.ready.is_set():
                await s.ready.wait()
            await s.credit.acquire(amount)
            if s.closed:
                raise StreamClosed()
            if not await s.conn.send_stream(msg):
                self._table.drop(s, CONNECTION_LOST, notify_handler=True)
                raise StreamClosed()

    async def close(self, reason: str) -> None:
        await self._table.close(self._stream, reason, notify_handler=False)


class StreamTable:
    """Every open stream of this agent, by (connection, stream id)."""

    def __init__(self, kernels: KernelRegistry, starters: Mapping[str, StreamStarter]) -> None:
        self._kernels = kernels
        self._starters = starters
        self._streams: dict[tuple[int, str], Stream] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._streams)

    def streams_of(self, kernel_id: str) -> list[Stream]:
        return [s for s in self._streams.values() if s.kernel_id == kernel_id]

    # ---- from a manager ------------------------------------------------------------

    async def dispatch(self, msg: Message, conn: Connection) -> Message | None:
        """Serve one stream message from ``conn``. Nothing awaits before a one-way message
        is queued, so messages of a stream keep the order they came in."""
        if isinstance(msg, StreamStart):
            return await self._start(msg, conn)
        stream = self._streams.get((id(conn), getattr(msg, "stream_id", "")))
        if stream is None or stream.closed:
            log.debug("%s for an unknown stream %r: ignored", msg.msg_type,
                      getattr(msg, "stream_id", "?"))
            return None
        if isinstance(msg, StreamCredit):
            if isinstance(msg.amount, int):
                stream.credit.release(msg.amount)
            return None
        self._enqueue(stream, msg)
        return None

    async def _start(self, msg: StreamStart, conn: Connection) -> Message:
        if not isinstance(msg.stream_id, str) or not STREAM_ID.fullmatch(msg.stream_id):
            raise InvalidAPIParameters("bad stream id")
        key = (id(conn), msg.stream_id)
        if key in self._streams:
            raise InvalidAPIParameters(f"stream {msg.stream_id} is already open")
        if len(self._streams) >= MAX_STREAMS:
            raise RateLimitExceeded(f"this agent has {MAX_STREAMS} streams open already")
        starter = self._starters.get(msg.kind) if isinstance(msg.kind, str) else None
        if starter is None:
            raise InvalidAPIParameters(f"unknown stream kind {msg.kind!r}")
        if not isinstance(msg.params, dict) or not isinstance(msg.kernel_id, str):
            raise InvalidAPIParameters("stream params must be a map, kernel_id a string")
        kernel = self._kernels.get(msg.kernel_id)
        if kernel.busy:
            raise KernelNotRunning(f"kernel {msg.kernel_id} is being restarted or destroyed")
        stream = Stream(msg.stream_id, msg.kernel_id, msg.kind, conn)
        self._streams[key] = stream  # before the starter runs: credits may come early
        try:
            handler, info = await starter(kernel, dict(msg.params), Sink(self, stream))
        except BaseException:
            self.drop(stream, "", notify_handler=False)
            raise
        if stream.closed:  # the connection or the kernel went while it started
            with contextlib.suppress(Exception):
                await handler.on_close(CONNECTION_LOST)
            raise KernelNotRunning(f"stream {msg.stream_id} ended while it started (its "
                                   f"kernel {msg.kernel_id} or its connection went away)")
        stream.handler = handler
        stream.worker = asyncio.ensure_future(self._work(stream))
        # The reply goes out in the same step this returns (DealerLink sends it without
        # blocking), so the stream's own messages, released just after, follow it.
        asyncio.get_running_loop().call_soon(stream.ready.set)
        log.info("stream %s (%s) started on kernel %s", stream.stream_id, stream.kind,
                 stream.kernel_id)
        return StreamStarted(stream_id=msg.stream_id, info=info)

    def _enqueue(self, stream: Stream, msg: Message) -> None:
        size = cost(msg.data) if isinstance(msg, StreamData) and isinstance(
            msg.data, bytes) else CONTROL_COST
        if stream.inbox_bytes + size > INBOX_BYTES:
            log.warning("stream %s: %s", stream.stream_id, FLOW_VIOLATION)
            self.drop(stream, FLOW_VIOLATION, notify_handler=True)
            self._spawn(self._send_close(stream, FLOW_VIOLATION))
            return
        stream.inbox.append(msg)
        stream.inbox_bytes += size
        stream.wake.set()

    async def _work(self, stream: Stream) -> None:
        """Hand the manager's messages to the handler, one at a time, in order."""
        handler = stream.handler
        assert handler is not None
        while not stream.closed:
            if not stream.inbox:
                stream.wake.clear()
                await stream.wake.wait()
                continue
            msg = stream.inbox.popleft()
            size = cost(msg.data) if isinstance(msg, StreamData) and isinstance(
                msg.data, bytes) else CONTROL_COST
            stream.inbox_bytes -= size
            try:
                await self._handle(stream, handler, msg)
            except StreamClosed:
                return
            except Exception:
                log.exception("stream %s: the %s handler failed on %s", stream.stream_id,
                              stream.kind, msg.msg_type)

    async def _handle(self, stream: Stream, handler: StreamHandler, msg: Message) -> None:
        if isinstance(msg, StreamData):
            if not isinstance(msg.data, bytes):
                return
            await handler.on_data(msg.data)
            if not stream.closed and msg.data:
                await stream.conn.send_stream(
                    StreamCredit(stream_id=stream.stream_id, amount=cost(msg.data)))
        elif isinstance(msg, StreamControl):
            if isinstance(msg.body, dict):
                await handler.on_control(msg.body)
        elif isinstance(msg, StreamResize):
            if isinstance(msg.rows, int) and isinstance(msg.cols, int):
                await handler.on_resize(msg.rows, msg.cols)
        elif isinstance(msg, StreamClose):
            reason = msg.reason if isinstance(msg.reason, str) else ""
            self.drop(stream, reason, notify_handler=False)
            await handler.on_close(reason or "closed by the client")
            raise StreamClosed()

    # ---- ending streams --------------------------------------------------------------

    def drop(self, stream: Stream, reason: str, notify_handler: bool) -> None:
        """Forget a stream without telling the manager (its connection is gone, or the
        manager closed it); ``notify_handler``: call ``on_close(reason)`` in the
        background."""
        if stream.closed:
            return
        stream.closed = True
        stream.credit.close()
        stream.ready.set()
        stream.wake.set()
        key = (id(stream.conn), stream.stream_id)
        if self._streams.get(key) is stream:
            del self._streams[key]
        current = asyncio.current_task()
        if stream.worker is not None and stream.worker is not current:
            stream.worker.cancel()
        if notify_handler and stream.handler is not None:
            self._spawn(_notify(stream, reason))

    async def close(self, stream: Stream, reason: str, notify_handler: bool) -> None:
        """End a stream from this side: the manager gets ``stream-close(reason)``."""
        if stream.closed:
            return
        self.drop(stream, reason, notify_handler)
        await self._send_close(stream, reason)

    @staticmethod
    async def _send_close(stream: Stream, reason: str) -> None:
        await stream.conn.send_stream(StreamClose(stream_id=stream.stream_id, reason=reason))

    def connection_lost(self, conn: Connection) -> None:
        """``conn`` dropped or joins again: its streams end, what is behind them stays."""
        for stream in [s for s in self._streams.values() if s.conn is conn]:
            log.info("stream %s ends: %s", stream.stream_id, CONNECTION_LOST)
            self.drop(stream, CONNECTION_LOST, notify_handler=True)

    def kernel_gone(self, kernel_id: str, reason: str) -> None:
        """The kernel was destroyed, restarted or died: its streams end with ``reason``."""
        for stream in self.streams_of(kernel_id):
            self._spawn(self.close(stream, reason, notify_handler=True))

    async def close_all(self) -> None:
        """The agent stops: every stream ends (the managers see the connection go)."""
        for stream in list(self._streams.values()):
            self.drop(stream, CONNECTION_LOST, notify_handler=True)
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _spawn(self, coro: Awaitable[None]) -> None:
        spawn_into(self._tasks, coro)


async def _notify(stream: Stream, reason: str) -> None:
    assert stream.handler is not None
    try:
        await stream.handler.on_close(reason)
    except Exception:
        log.exception("stream %s: on_close failed", stream.stream_id)
