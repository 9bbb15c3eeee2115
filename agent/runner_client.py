"""The agent's ZeroMQ client to the runner inside one kernel container.

PUSH → port 2000 (runs, input, completion), PULL ← port 2001 (output), DEALER →
port 2002 (control: ping, interrupt, shutdown; never queued behind a run). All
three connect to the container's address on the kernels network, so a client can be
rebuilt at any time — after an agent restart, or a container restart — and
simply reconnects.
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
from common.errors import AgentTimeout, KernelExecutionFailed
from common.msg_runner import (
    CONTROL_PORT,
    INPUT_PORT,
    OUTPUT_PORT,
    RUNNER_PROTOCOL,
    Complete,
    Completions,
    ControlAck,
    Interrupt,
    Ping,
    RunnerReady,
    Shutdown,
)

log = logging.getLogger(__name__)

OutputHandler = Callable[[Message], None]
PING_INTERVAL = 0.25
SEND_TIMEOUT = 5.0


class RunnerClient:
    """Sockets to one runner; output messages go to ``on_output`` as they arrive."""

    def __init__(self, ctx: zmq.asyncio.Context, host: str, on_output: OutputHandler) -> None:
        self.host = host
        self._ctx = ctx
        self._on_output = on_output
        self._push = self._socket(zmq.PUSH, INPUT_PORT)
        self._pull = self._socket(zmq.PULL, OUTPUT_PORT)
        self._control = self._socket(zmq.DEALER, CONTROL_PORT)
        self._control_lock = asyncio.Lock()
        self._acks: asyncio.Queue[ControlAck] = asyncio.Queue()
        self._completions: dict[int, asyncio.Future[list[str]]] = {}
        self._req_ids = itertools.count(1)
        self.features: list[str] = []
        self._tasks = [asyncio.ensure_future(self._output_loop()),
                       asyncio.ensure_future(self._control_loop())]

    def _socket(self, kind: int, port: int) -> zmq.asyncio.Socket:
        sock = self._ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RECONNECT_IVL, 50)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        if kind == zmq.PUSH:
            sock.setsockopt(zmq.IMMEDIATE, 1)  # do not queue input for a runner not there
        sock.connect(f"tcp://{self.host}:{port}")
        return sock

    async def send(self, msg: Message) -> None:
        """Send one message on the input socket; fails if the runner stays unreachable."""
        frame = RUNNER_PROTOCOL.encode(msg)
        try:
            await self._push.send(frame, zmq.NOBLOCK)
        except zmq.Again:
            try:
                await asyncio.wait_for(self._push.send(frame), SEND_TIMEOUT)
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
                self.features = list(msg.features)
            else:
                self._on_output(msg)

    async def _control_loop(self) -> None:
        while True:
            frames = await self._control.recv_multipart()
            try:
                msg, _ = RUNNER_PROTOCOL.decode(frames[-1])
            except WireFormatError as e:
                log.warning("runner %s control: %s", self.host, e)
                continue
            if isinstance(msg, ControlAck):
                self._acks.put_nowait(msg)

    async def control(self, msg: Message, timeout: float) -> ControlAck:
        """One control request; ``AgentTimeout`` if the runner does not answer."""
        async with self._control_lock:
            self._drain_acks()
            await self._control.send(RUNNER_PROTOCOL.encode(msg, 1))
            try:
                return await asyncio.wait_for(self._acks.get(), timeout)
            except TimeoutError:
                raise AgentTimeout(f"runner did not answer {msg.msg_type}") from None

    def _drain_acks(self) -> None:
        while not self._acks.empty():
            self._acks.get_nowait()

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
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            return []
        finally:
            self._completions.pop(req_id, None)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for sock in (self._push, self._pull, self._control):
            sock.close(linger=0)
