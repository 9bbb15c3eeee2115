"""The stream hub of one replica: stream id → relay, over agent link v2.

A relay is the manager's end of one stream (a terminal, a streamed execute, a service
proxy): the WebSocket handler reads what the agent sent with ``next()`` and returns
credit with ``passed_on()`` once it reached the WebSocket; it sends the client's bytes
with ``send_data()``, which waits for the agent's credit (common.streams: at most
``WINDOW_BYTES`` uncredited each way). An agent that sends past its window, or for a
stream that is not its own, is not listened to. A stream belongs to the agent
connection (link peer) that started it: when that connection drops, or the session
leaves RUNNING, the stream ends with a reason.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from common.codec import Message
from common.errors import AgentUnavailable, KrakenError
from common.link import PeerId, expect
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
from common.streams import SERVICE_START_TIMEOUT, WINDOW_BYTES, cost
from common.tasks import spawn_into
from manager.registry import AgentRegistry
from manager.replica import public_info

log = logging.getLogger(__name__)

CHUNK_BYTES = WINDOW_BYTES // 4  # client bytes are sent to the agent in pieces this big
STALL_CHECK = 1.0  # seconds between checks for a vanished client while credit is awaited
WATCH_QUEUE = 256  # lifecycle events held for one events WebSocket


@dataclass(frozen=True, slots=True)
class Event:
    """One execute message from the agent."""

    seq: int
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Closed:
    """The stream ended; ``reason`` says why ("" when it simply finished)."""

    reason: str


Item = bytes | Event | Closed


def _well_formed(msg: StreamData | StreamEvent) -> bool:
    if isinstance(msg, StreamData):
        return isinstance(msg.data, (bytes, bytearray))
    return isinstance(msg.body, dict) and isinstance(msg.seq, int) \
        and not isinstance(msg.seq, bool)


class Relay:
    """The manager's end of one stream."""

    def __init__(self, hub: StreamHub, stream_id: str, agent_id: str, peer: PeerId,
                 kernel_id: str, kind: str) -> None:
        self.hub, self.stream_id, self.agent_id = hub, stream_id, agent_id
        self.peer, self.kernel_id, self.kind = peer, kernel_id, kind
        self.info: dict[str, Any] = {}
        self.closed: str | None = None  # the reason, once ended
        self._inbox: asyncio.Queue[Item] = asyncio.Queue()  # bounded by the agent's window
        self._unacked = 0  # bytes received from the agent, not yet credited back
        self._credit = WINDOW_BYTES  # bytes we may still send to the agent
        self._credit_changed = asyncio.Event()

    # ---- from the agent (called by the hub) ----------------------------------------

    def _feed(self, msg: Message) -> None:
        if self.closed is not None:
            return
        if isinstance(msg, StreamCredit):
            self._credit = min(self._credit + max(int(msg.amount), 0), WINDOW_BYTES)
            self._credit_changed.set()
        elif isinstance(msg, StreamClose):
            self._ended(str(msg.reason or ""))
        elif isinstance(msg, (StreamData, StreamEvent)):
            payload = msg.data if isinstance(msg, StreamData) else msg.body
            if not _well_formed(msg):
                self.hub.spawn(self.close(f"the agent sent a malformed {msg.msg_type}"))
                return
            self._unacked += cost(payload)
            if self._unacked > WINDOW_BYTES:
                log.warning("agent %s overran the window of stream %s; closing it",
                            self.agent_id, self.stream_id)
                self.hub.spawn(self.close("the agent sent more than its credit window"))
                return
            self._inbox.put_nowait(bytes(msg.data) if isinstance(msg, StreamData)
                                   else Event(int(msg.seq), dict(msg.body)))

    def _ended(self, reason: str) -> None:
        """The stream is over on the agent's side (or its connection is gone)."""
        if self.closed is None:
            self.closed = reason
            self._inbox.put_nowait(Closed(reason))
            self._credit_changed.set()
            self.hub.forget(self)

    # ---- for the WebSocket handler -------------------------------------------------

    async def next(self) -> Item:
        """The next thing the agent sent; ``Closed`` once the stream ended."""
        return await self._inbox.get()

    async def passed_on(self, item: bytes | Event) -> None:
        """``item`` reached the client: let the agent send that much more."""
        amount = cost(item if isinstance(item, bytes) else item.body)
        self._unacked = max(self._unacked - amount, 0)
        await self._send(StreamCredit(stream_id=self.stream_id, amount=amount))

    async def send_data(self, data: bytes, gone: Callable[[], bool] = lambda: False) -> bool:
        """Send client bytes, waiting for the agent's credit; False once ended. While
        it waits, ``gone()`` is asked every second whether the client vanished."""
        for start in range(0, len(data), CHUNK_BYTES):
            chunk = data[start:start + CHUNK_BYTES]
            while self.closed is None and self._credit < len(chunk):
                self._credit_changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(STALL_CHECK):
                        await self._credit_changed.wait()
                if gone():
                    await self.close("the client went away")
            if self.closed is not None:
                return False
            self._credit -= len(chunk)
            await self._send(StreamData(stream_id=self.stream_id, data=chunk))
        return self.closed is None

    async def control(self, body: dict[str, Any]) -> None:
        await self._send(StreamControl(stream_id=self.stream_id, body=body))

    async def resize(self, rows: int, cols: int) -> None:
        await self._send(StreamResize(stream_id=self.stream_id, rows=rows, cols=cols))

    async def close(self, reason: str) -> None:
        """End the stream from this side (client gone, session ended) and tell the agent."""
        if self.closed is not None:
            return
        self._ended(reason)
        with contextlib.suppress(KrakenError, ConnectionError):
            await self.hub.send(self.peer, StreamClose(stream_id=self.stream_id, reason=reason))

    async def _send(self, msg: Message) -> None:
        if self.closed is not None:
            return
        try:
            await self.hub.send(self.peer, msg)
        except (KrakenError, ConnectionError) as e:
            self._ended(f"the agent's connection was lost ({e})")


class StreamHub:
    """Every stream of this replica, routed by stream id and checked against its agent."""

    def __init__(self, registry: AgentRegistry, start_timeout: float) -> None:
        self._registry = registry
        self._start_timeout = start_timeout
        self._relays: dict[str, Relay] = {}
        self._watchers: dict[str, set[asyncio.Queue[dict[str, Any] | None]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        for cls in (StreamData, StreamEvent, StreamCredit, StreamClose):
            registry.add_handler(cls, self._on_agent_message)
        registry.on_peer_dropped(self.peer_dropped)

    def __len__(self) -> int:
        """How many streams this replica relays now."""
        return len(self._relays)

    async def start(self, agent_id: str, kernel_id: str, kind: str,
                    params: dict[str, Any]) -> Relay:
        """``stream-start`` to the kernel's agent; the agent's refusal is raised as its
        KrakenError (e.g. 404 service-not-found)."""
        peer = self._registry.peer_of(agent_id)
        if peer is None:
            raise AgentUnavailable(f"agent {agent_id} is not connected to this manager; "
                                   "retry shortly")
        relay = Relay(self, uuid.uuid4().hex, agent_id, peer, kernel_id, kind)
        self._relays[relay.stream_id] = relay  # the agent may send before its reply lands
        # a proxy may first wait for its service to start inside the session
        timeout = max(self._start_timeout, SERVICE_START_TIMEOUT + 10) if kind == "proxy" \
            else self._start_timeout
        try:
            reply = await self._registry.request(agent_id, StreamStart(
                stream_id=relay.stream_id, kernel_id=kernel_id, kind=kind, params=params),
                timeout)
            relay.info = dict(expect(reply, StreamStarted).info or {})
        except BaseException:
            self.forget(relay)
            relay.closed = relay.closed or "not started"
            # the agent may have started it after all (a timeout, a cancelled client)
            with contextlib.suppress(Exception):
                await asyncio.shield(self.send(peer, StreamClose(stream_id=relay.stream_id,
                                                                 reason="not started")))
            raise
        if relay.closed is None and self._registry.peer_of(agent_id) != peer:
            relay._ended("the agent's connection was replaced")
        return relay

    def forget(self, relay: Relay) -> None:
        if self._relays.get(relay.stream_id) is relay:
            del self._relays[relay.stream_id]

    async def send(self, peer: PeerId, msg: Message) -> None:
        link = self._registry.link
        if link is None:
            raise ConnectionError("the agent link is closed")
        await link.send(peer, msg)

    async def _on_agent_message(self, peer: PeerId, msg: Message) -> Message | None:
        """Registry handler (no await before routing: the link's per-message tasks
        start in arrival order, so a stream's messages stay in order)."""
        relay = self._relays.get(str(getattr(msg, "stream_id", "")))
        if relay is None or relay.peer != peer:
            log.debug("ignoring %s for a stream this agent connection does not hold",
                      msg.msg_type)
            return None
        relay._feed(msg)
        return None

    def peer_dropped(self, peer: PeerId, why: str) -> None:
        for relay in [r for r in self._relays.values() if r.peer == peer]:
            relay._ended(f"the agent's connection was {why}")

    def kernel_left_running(self, kernel_id: str, status: str, reason: str | None) -> None:
        """The session left RUNNING (seen on any replica): end its streams."""
        reason = public_info(reason)
        why = f"the session is {status}" + (f" ({reason})" if reason else "")
        for relay in [r for r in self._relays.values() if r.kernel_id == kernel_id]:
            self.spawn(relay.close(why))

    # ---- lifecycle events of every replica (the app's EventBus follower) ------------

    def on_bus_event(self, event: dict[str, Any]) -> None:
        if event.get("event") != "kernel-status":
            return
        kernel_id = str(event.get("kernelId"))
        if event.get("to") != "RUNNING":
            self.kernel_left_running(kernel_id, str(event.get("to")), event.get("reason"))
        for queue in list(self._watchers.get(kernel_id, ())):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:  # a watcher that does not keep up is dropped
                self.unwatch(kernel_id, queue)
                queue.get_nowait()
                queue.put_nowait(None)

    def watch(self, kernel_id: str) -> asyncio.Queue[dict[str, Any] | None]:
        """A queue of the session's events (None: no more; the client should reconnect:
        it did not keep up, or this replica is shutting down)."""
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(WATCH_QUEUE)
        self._watchers.setdefault(kernel_id, set()).add(queue)
        return queue

    def unwatch(self, kernel_id: str, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        queues = self._watchers.get(kernel_id)
        if queues is not None:
            queues.discard(queue)
            if not queues:
                del self._watchers[kernel_id]

    def spawn(self, coro: Any) -> None:
        spawn_into(self._tasks, coro)

    async def close(self) -> None:
        """Shutdown: every stream ends with a reason, every events socket is told to
        reconnect (to another replica)."""
        for kernel_id, queues in list(self._watchers.items()):
            for queue in list(queues):
                self.unwatch(kernel_id, queue)
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(None)
        for relay in list(self._relays.values()):
            await relay.close("the manager is shutting down")
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
