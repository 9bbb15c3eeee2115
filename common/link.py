"""The agent link transport: request/reply and one-way messages over ZeroMQ.

``RouterLink`` is the manager end (ROUTER, binds, CurveZMQ server); ``DealerLink``
is the agent end (DEALER, connects out, CurveZMQ client). Both correlate replies
with ``corr_id`` and hand every incoming request to a handler task of its own, so
a long execute never blocks a heartbeat. Peers on a ROUTER are the routing ids
ZeroMQ assigns; which agent stands behind one is decided above this layer (Join).
Both ends refuse messages above ``common.limits.MAX_MESSAGE_BYTES`` (ZeroMQ
``MAXMSGSIZE``: the peer that sent one is disconnected, nobody else), and neither
sends one: a reply that would exceed it becomes an ``ErrorReply`` instead.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import zmq
import zmq.asyncio

from common.codec import Message, Protocol, WireFormatError
from common.errors import AgentTimeout, PayloadTooLarge, ProtocolError, ServiceUnavailable
from common.limits import MAX_MESSAGE_BYTES
from common.tasks import spawn_into

log = logging.getLogger(__name__)

PeerId = bytes
RouterHandler = Callable[[PeerId, Message], Awaitable[Message | None]]
DealerHandler = Callable[[Message], Awaitable[Message | None]]


class _Correlator:
    """Futures awaiting replies, keyed by corr_id."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Message]] = {}

    def open(self) -> tuple[int, asyncio.Future[Message]]:
        corr_id = next(self._ids)
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiting[corr_id] = fut
        return corr_id, fut

    def resolve(self, corr_id: int, msg: Message) -> bool:
        fut = self._waiting.pop(corr_id, None)
        if fut is None:
            return False
        if not fut.done():
            fut.set_result(msg)
        return True

    def discard(self, corr_id: int) -> None:
        self._waiting.pop(corr_id, None)

    def fail(self, corr_ids: set[int], make_exc: Callable[[], BaseException]) -> int:
        """Fail the requests still waiting among ``corr_ids``; returns how many."""
        failed = 0
        for corr_id in corr_ids:
            fut = self._waiting.pop(corr_id, None)
            if fut is not None and not fut.done():
                fut.set_exception(make_exc())
                failed += 1
        return failed

    def fail_all(self, exc: BaseException) -> None:
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(exc)
        self._waiting.clear()


class _LinkBase:
    def __init__(self, protocol: Protocol, socket_type: int) -> None:
        self.protocol = protocol
        self._ctx = zmq.asyncio.Context()
        self._sock = self._ctx.socket(socket_type)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        self._corr = _Correlator()
        self._tasks: set[asyncio.Task[None]] = set()
        self._recv_task: asyncio.Task[None] | None = None

    def _spawn(self, coro: Awaitable[None]) -> None:
        spawn_into(self._tasks, coro)

    async def close(self) -> None:
        if self._recv_task is not None:
            self._recv_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recv_task
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._corr.fail_all(ConnectionError("link closed"))
        self._sock.close(linger=0)
        self._ctx.term()

    def _encode(self, msg: Message, corr_id: int) -> bytes:
        frame = self.protocol.encode(msg, corr_id)
        if len(frame) > MAX_MESSAGE_BYTES:
            raise PayloadTooLarge(f"a {msg.msg_type} message of {len(frame):,} bytes is larger "
                                  f"than the link's limit of {MAX_MESSAGE_BYTES:,}")
        return frame

    def _too_large_reply(self, error: PayloadTooLarge) -> Message:
        from common.msg_agent import ErrorReply

        log.warning("%s", error)
        return ErrorReply(error_type=error.slug, detail=str(error))

    def _take(self, frame: bytes) -> tuple[Message, int] | None:
        """Decode a frame; a reply resolves its waiting request (→ None), a request or
        one-way message is returned for a handler; an undecodable frame is dropped."""
        try:
            msg, corr_id = self.protocol.decode(frame)
        except WireFormatError as e:
            log.warning("dropping an undecodable %s frame: %s", self.protocol.name, e)
            return None
        if corr_id < 0 and self._corr.resolve(-corr_id, msg):
            return None
        return msg, corr_id

    async def _await_reply(self, corr_id: int, fut: asyncio.Future[Message],
                           timeout: float) -> Message:
        try:
            # not wait_for: on Python 3.11 it swallows a cancellation that lands as the
            # reply arrives, and the cancelled caller (a closing agent) runs on forever
            async with asyncio.timeout(timeout):
                return await fut
        except TimeoutError:
            raise AgentTimeout(f"no reply within {timeout:.1f}s") from None
        finally:
            self._corr.discard(corr_id)


class RouterLink(_LinkBase):
    """Manager end: many agents connect to one bound ROUTER socket."""

    def __init__(self, protocol: Protocol, bind: str, handler: RouterHandler, *,
                 curve_secret_key: bytes | None = None,
                 curve_public_key: bytes | None = None) -> None:
        super().__init__(protocol, zmq.ROUTER)
        self._handler = handler
        if curve_secret_key is not None:
            self._sock.curve_server = True
            self._sock.curve_secretkey = curve_secret_key
            self._sock.curve_publickey = curve_public_key
        self._sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self._pending: dict[PeerId, set[int]] = {}  # corr_ids in flight, per peer
        self._sock.bind(bind)
        self.endpoint = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)

    def start(self) -> None:
        self._recv_task = asyncio.ensure_future(self._recv_loop())

    async def send(self, peer: PeerId, msg: Message, corr_id: int = 0) -> None:
        try:
            await self._sock.send_multipart([peer, self._encode(msg, corr_id)])
        except zmq.ZMQError as e:  # EHOSTUNREACH: the peer is gone
            raise ConnectionError(f"agent connection lost: {e}") from None

    async def request(self, peer: PeerId, msg: Message, timeout: float) -> Message:
        corr_id, fut = self._corr.open()
        pending = self._pending.setdefault(peer, set())
        pending.add(corr_id)
        try:
            await self.send(peer, msg, corr_id)
            return await self._await_reply(corr_id, fut, timeout)
        finally:
            self._corr.discard(corr_id)
            pending.discard(corr_id)
            if not pending and self._pending.get(peer) is pending:
                del self._pending[peer]

    def fail_peer(self, peer: PeerId, make_exc: Callable[[], BaseException]) -> int:
        """Fail at once every request waiting for a reply from ``peer`` (its connection
        was replaced or lost); returns how many were failed."""
        return self._corr.fail(self._pending.pop(peer, set()), make_exc)

    async def _recv_loop(self) -> None:
        while True:
            frames = await self._sock.recv_multipart()
            if len(frames) != 2:
                log.warning("dropping a %d-frame message on the agent link", len(frames))
                continue
            peer, frame = frames
            incoming = self._take(frame)
            if incoming is not None:
                self._spawn(self._handle(peer, *incoming))

    async def _handle(self, peer: PeerId, msg: Message, corr_id: int) -> None:
        try:
            reply = await self._handler(peer, msg)
        except Exception:
            log.exception("agent-link handler failed on %s", msg.msg_type)
            return
        if reply is not None and corr_id > 0:
            with contextlib.suppress(ConnectionError):
                try:
                    await self.send(peer, reply, -corr_id)
                except PayloadTooLarge as e:
                    await self.send(peer, self._too_large_reply(e), -corr_id)


class DealerLink(_LinkBase):
    """Agent end: one DEALER socket dialing out to one manager replica."""

    def __init__(self, protocol: Protocol, connect: str, handler: DealerHandler, *,
                 server_public_key: bytes | None = None, fail_fast: bool = False,
                 heartbeat_timeout: float = 0.0,
                 on_disconnect: Callable[[], None] | None = None) -> None:
        """``fail_fast``: sends never wait for a peer that is not connected (or whose
        queue is full): they raise ``ServiceUnavailable`` at once (ZMQ_IMMEDIATE +
        non-blocking sends). ``heartbeat_timeout`` > 0: ZMTP pings every fifth of it and
        drop a connection whose peer does not answer (a stopped process), so
        ``fail_fast`` sends see it gone. ``on_disconnect`` is called each time an
        established connection drops (what was bound to it, such as streams, ends)."""
        super().__init__(protocol, zmq.DEALER)
        self._handler = handler
        self._on_disconnect = on_disconnect
        self._monitor: zmq.asyncio.Socket | None = None
        self._fail_fast = fail_fast
        if fail_fast:
            self._sock.setsockopt(zmq.IMMEDIATE, 1)
        if heartbeat_timeout > 0:
            ms = max(int(heartbeat_timeout * 1000), 10)
            self._sock.setsockopt(zmq.HEARTBEAT_IVL, max(ms // 5, 1))
            self._sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, ms)
            self._sock.setsockopt(zmq.HEARTBEAT_TTL, ms)
        if server_public_key is not None:
            public, secret = zmq.curve_keypair()
            self._sock.curve_serverkey = server_public_key
            self._sock.curve_publickey = public
            self._sock.curve_secretkey = secret
        self._sock.setsockopt(zmq.RECONNECT_IVL, 200)
        self._sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
        self._sock.connect(connect)
        self.endpoint = connect

    def start(self) -> None:
        self._recv_task = asyncio.ensure_future(self._recv_loop())
        if self._on_disconnect is not None:
            self._monitor = self._sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
            self._spawn(self._monitor_loop(self._monitor, self._on_disconnect))

    async def _monitor_loop(self, monitor: zmq.asyncio.Socket,
                            on_disconnect: Callable[[], None]) -> None:
        while True:
            await monitor.recv_multipart()
            try:
                on_disconnect()
            except Exception:
                log.exception("disconnect handler failed")

    async def close(self) -> None:
        if self._monitor is not None:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._sock.disable_monitor()
            self._monitor.close(linger=0)
            self._monitor = None
        await super().close()

    async def send(self, msg: Message, corr_id: int = 0) -> None:
        frame = self._encode(msg, corr_id)
        if not self._fail_fast:
            await self._sock.send(frame)
            return
        try:
            await self._sock.send(frame, zmq.NOBLOCK)
        except zmq.Again:
            raise ServiceUnavailable(f"{self.endpoint} is not connected (down, unreachable, "
                                     "or its CurveZMQ key does not match)") from None

    async def request(self, msg: Message, timeout: float) -> Message:
        corr_id, fut = self._corr.open()
        try:
            await self.send(msg, corr_id)
        except BaseException:
            self._corr.discard(corr_id)
            raise
        return await self._await_reply(corr_id, fut, timeout)

    async def _recv_loop(self) -> None:
        while True:
            incoming = self._take(await self._sock.recv())
            if incoming is not None:
                self._spawn(self._handle(*incoming))

    async def _handle(self, msg: Message, corr_id: int) -> None:
        try:
            reply = await self._handler(msg)
        except Exception:
            log.exception("manager-link handler failed on %s", msg.msg_type)
            return
        if reply is not None and corr_id > 0:
            try:
                await self.send(reply, -corr_id)
            except PayloadTooLarge as e:
                with contextlib.suppress(ServiceUnavailable):
                    await self.send(self._too_large_reply(e), -corr_id)
            except ServiceUnavailable as e:
                log.warning("reply %s lost: %s", reply.msg_type, e)


T = TypeVar("T", bound=Message)


def expect(reply: Message, cls: type[T]) -> T:
    """Return ``reply`` if it is a ``cls``; raise the reported error otherwise."""
    from common.errors import error_from_wire
    from common.msg_agent import ErrorReply

    if isinstance(reply, cls):
        return reply
    if isinstance(reply, ErrorReply):
        raise error_from_wire(reply.error_type, reply.detail)
    raise ProtocolError(f"expected {cls.msg_type}, got {reply.msg_type}")
