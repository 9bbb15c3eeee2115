"""The agent's ZeroMQ client to the runner inside one kernel container.

PUSH → port 2000 (runs, input, completion), PULL ← port 2001 (output), DEALER →
port 2002 (control: ping, interrupt, shutdown, status, services; never queued behind a run). All
three connect to the container's address on the kernels network, so a client can be
rebuilt at any time — after an agent restart, or a container restart — and
simply reconnects.

The runner is not trusted (user code can replace it): the sockets that receive from it
refuse messages above ``MAX_OUTPUT_MESSAGE_BYTES`` and queue at most ``OUTPUT_RCVHWM`` of
them; a message that breaks its handler is logged and dropped, and the loop goes on.
ZeroMQ drops a connection that carried an oversized message and, being a protocol error,
never dials it again; a monitor on the output socket dials again after
``REDIAL_PAUSE``, so a runner (hostile, or from an image older than the output limits)
loses that message, never its kernel's output for good.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable
from typing import Any

import zmq
import zmq.asyncio

from common.codec import Message, WireFormatError
from common.errors import AgentTimeout, KernelExecutionFailed, ProtocolError, ServiceStartFailed
from common.limits import MAX_MESSAGE_BYTES, MAX_OUTPUT_MESSAGE_BYTES, OUTPUT_RCVHWM
from common.msg_runner import (
    CONTROL_PORT,
    INPUT_PORT,
    OUTPUT_PORT,
    RUNNER_PROTOCOL,
    Complete,
    Completions,
    ControlAck,
    GetStatus,
    Interrupt,
    Ping,
    RunnerReady,
    RunnerStatus,
    ServiceStatus,
    Shutdown,
    StartService,
)

log = logging.getLogger(__name__)

OutputHandler = Callable[[Message], None]
PING_INTERVAL = 0.25
SEND_TIMEOUT = 5.0
STATUS_TIMEOUT = 5.0
REDIAL_PAUSE = 0.1


class RunnerClient:
    """Sockets to one runner; output messages go to ``on_output`` as they arrive."""

    def __init__(self, ctx: zmq.asyncio.Context, host: str, on_output: OutputHandler) -> None:
        self.host = host
        self._ctx = ctx
        self._on_output = on_output
        self._push = self._socket(zmq.PUSH, INPUT_PORT)
        self._pull = self._socket(zmq.PULL, OUTPUT_PORT)
        self._pull_monitor = self._pull.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self._control = self._socket(zmq.DEALER, CONTROL_PORT)
        self._control_ids = itertools.count(1)
        self._control_waiting: dict[int, asyncio.Future[Message]] = {}
        self._status_waiting: set[int] = set()  # requests an older runner cannot decode
        self._completions: dict[int, asyncio.Future[list[str]]] = {}
        self._req_ids = itertools.count(1)
        self.features: list[str] = []
        self._tasks = [asyncio.ensure_future(self._output_loop()),
                       asyncio.ensure_future(self._control_loop()),
                       asyncio.ensure_future(self._redial_loop())]

    def _socket(self, kind: int, port: int) -> zmq.asyncio.Socket:
        sock = self._ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RECONNECT_IVL, 50)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        if kind == zmq.PUSH:
            sock.setsockopt(zmq.IMMEDIATE, 1)  # do not queue input for a runner not there
            sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        else:  # what the runner sends: console output, completions, control acks
            sock.setsockopt(zmq.MAXMSGSIZE, MAX_OUTPUT_MESSAGE_BYTES)
            sock.setsockopt(zmq.RCVHWM, OUTPUT_RCVHWM)
        sock.connect(f"tcp://{self.host}:{port}")
        return sock

    async def send(self, msg: Message) -> None:
        """Send one message on the input socket; fails if the runner stays unreachable."""
        frame = RUNNER_PROTOCOL.encode(msg)
        try:
            await self._push.send(frame, zmq.NOBLOCK)
        except zmq.Again:
            try:
                async with asyncio.timeout(SEND_TIMEOUT):
                    await self._push.send(frame)
            except TimeoutError:
                raise KernelExecutionFailed(f"the runner at {self.host} is unreachable") from None

    async def _output_loop(self) -> None:
        while True:
            frame = await self._pull.recv()
            try:
                msg, _ = RUNNER_PROTOCOL.decode(frame)
            except WireFormatError as e:
                log.warning("runner %s: %s", self.host, e)
                continue
            if isinstance(msg, Completions):
                fut = self._completions.pop(msg.req_id, None)
                if fut is not None and not fut.done():
                    fut.set_result(list(msg.items))
            elif isinstance(msg, RunnerReady):
                self.features = list(msg.features) if isinstance(msg.features, list) else []
            else:
                self._deliver(msg)

    def _deliver(self, msg: Message) -> None:
        try:
            self._on_output(msg)
        except Exception as e:  # noqa: BLE001 — a hostile runner's message, not our bug
            log.warning("runner %s: dropped a malformed %s: %r", self.host, msg.msg_type, e)

    async def _redial_loop(self) -> None:
        endpoint = f"tcp://{self.host}:{OUTPUT_PORT}"
        while True:
            await self._pull_monitor.recv_multipart()  # the output connection went down
            await asyncio.sleep(REDIAL_PAUSE)
            with contextlib.suppress(zmq.ZMQError):  # not connected any more: fine
                self._pull.disconnect(endpoint)
            self._pull.connect(endpoint)

    async def _control_loop(self) -> None:
        while True:
            frames = await self._control.recv_multipart()
            try:
                msg, corr_id = RUNNER_PROTOCOL.decode(frames[-1])
            except WireFormatError as e:
                log.warning("runner %s control: %s", self.host, e)
                continue
            if corr_id == 0:  # a runner older than a request could not decode it
                self._answer_undecodable(msg)
                continue
            fut = self._control_waiting.pop(-corr_id, None)
            if fut is not None and not fut.done():
                fut.set_result(msg)

    def _answer_undecodable(self, msg: Message) -> None:
        """An older runner answers a control message it does not know with an uncorrelated
        ``ControlAck(ok=False)``; the agent sends only ``get-status`` and ``start-service``
        of those, so that answer goes to those requests waiting (which then read "unknown")."""
        for corr_id in list(self._status_waiting):
            fut = self._control_waiting.pop(corr_id, None)
            if fut is not None and not fut.done():
                fut.set_result(msg)

    async def control_request(self, msg: Message, timeout: float) -> Message:
        """One control request, its reply matched by ``corr_id`` (a late answer to an
        earlier request is never taken for this one); ``AgentTimeout`` if none comes."""
        corr_id = next(self._control_ids)
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._control_waiting[corr_id] = fut
        if isinstance(msg, (GetStatus, StartService)):
            self._status_waiting.add(corr_id)
        try:
            await self._control.send(RUNNER_PROTOCOL.encode(msg, corr_id))
            async with asyncio.timeout(timeout):
                return await fut
        except TimeoutError:
            raise AgentTimeout(f"runner did not answer {msg.msg_type}") from None
        finally:
            self._control_waiting.pop(corr_id, None)
            self._status_waiting.discard(corr_id)

    async def control(self, msg: Message, timeout: float) -> ControlAck:
        reply = await self.control_request(msg, timeout)
        if not isinstance(reply, ControlAck):
            raise ProtocolError(f"runner answered {msg.msg_type} with {reply.msg_type}")
        return reply

    async def status(self, timeout: float = STATUS_TIMEOUT) -> RunnerStatus | None:
        """What the runner is running now; None if it cannot say (an older runner)."""
        reply = await self.control_request(GetStatus(), timeout)
        return reply if isinstance(reply, RunnerStatus) else None

    async def start_service(self, name: str, probe: bool = False,
                            timeout: float = STATUS_TIMEOUT) -> ServiceStatus:
        """Ask the runner to start the image's service ``name`` (``probe``: only report)."""
        reply = await self.control_request(StartService(name=name, probe=probe), timeout)
        if not isinstance(reply, ServiceStatus):
            raise ServiceStartFailed("this session's runner cannot start services "
                                     "(an image older than the service proxy)")
        return reply

    async def wait_ready(self, timeout: float) -> None:
        """Ping the control socket until the runner answers, for at most ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise AgentTimeout(f"the runner at {self.host} was not ready in {timeout:.0f}s")
            with contextlib.suppress(AgentTimeout):
                await self.control(Ping(), min(PING_INTERVAL, left))
                return

    async def interrupt(self) -> None:
        ack = await self.control(Interrupt(), 5.0)
        if not ack.ok:
            raise KernelExecutionFailed(f"interrupt failed: {ack.detail}")

    async def shutdown(self) -> None:
        with contextlib.suppress(AgentTimeout):
            await self.control(Shutdown(), 1.0)

    async def complete(self, code: str, options: dict[str, Any] | None,
                       timeout: float = 5.0) -> list[str]:
        req_id = next(self._req_ids)
        fut: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        self._completions[req_id] = fut
        try:
            await self.send(Complete(req_id=req_id, code=code, options=options))
            async with asyncio.timeout(timeout):
                return await fut
        except TimeoutError:
            return []
        finally:
            self._completions.pop(req_id, None)

    async def close(self) -> None:
        """Stop and close the sockets; a second call does nothing."""
        if self._push.closed:
            return
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._pull.disable_monitor()
        for sock in (self._pull_monitor, self._push, self._pull, self._control):
            sock.close(linger=0)
