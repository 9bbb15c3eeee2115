"""The agent link transport: request/reply and one-way messages over ZeroMQ.

``RouterLink`` is the manager end (ROUTER, binds, CurveZMQ server); ``DealerLink``
is the agent end (DEALER, connects out, CurveZMQ client). Both correlate replies
with ``corr_id`` and hand every incoming request to a handler task of its own, so
a long execute never blocks a heartbeat. Peers on a ROUTER are the routing ids
ZeroMQ assigns; which agent stands behind one is decided above this layer (Join).
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
from common.errors import AgentTimeout, ProtocolError

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
        self._corr = _Correlator()
        self._tasks: set[asyncio.Task[None]] = set()
        self._recv_task: asyncio.Task[None] | None = None

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
            return await asyncio.wait_for(fut, timeout)
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
        self._sock.bind(bind)
        self.endpoint = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)

    def start(self) -> None:
        self._recv_task = asyncio.ensure_future(self._recv_loop())

    async def send(self, peer: PeerId, msg: Message, corr_id: int = 0) -> None:
        try:
            await self._sock.send_multipart([peer, self.protocol.encode(msg, corr_id)])
        except zmq.ZMQError as e:  # EHOSTUNREACH: the peer is gone
            raise ConnectionError(f"agent connection lost: {e}") from None

    async def request(self, peer: PeerId, msg: Message, timeout: float) -> Message:
        corr_id, fut = self._corr.open()
        try:
            await self.send(peer, msg, corr_id)
        except BaseException:
            self._corr.discard(corr_id)
            raise
        return await self._await_reply(corr_id, fut, timeout)

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
                await self.send(peer, reply, -corr_id)


class DealerLink(_LinkBase):
    """Agent end: one DEALER socket dialing out to one manager replica."""

    def __init__(self, protocol: Protocol, connect: str, handler: DealerHandler, *,
                 server_public_key: bytes | None = None) -> None:
        super().__init__(protocol, zmq.DEALER)
        self._handler = handler
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

    async def send(self, msg: Message, corr_id: int = 0) -> None:
        await self._sock.send(self.protocol.encode(msg, corr_id))

    async def request(self, msg: Message, timeout: float) -> Message:
        corr_id, fut = self._corr.open()
        await self.send(msg, corr_id)
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
            await self.send(reply, -corr_id)


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
