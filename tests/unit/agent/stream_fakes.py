"""Fakes for the agent's stream tests: a manager connection, a kernel, a registry."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from agent.runs import KernelRuns
from agent.stream_kinds import STARTERS
from agent.streams import StreamTable
from agent.terminals import Terminals
from common.codec import Message
from common.errors import KernelNotFound
from common.msg_agent import StreamClose, StreamCredit, StreamData, StreamEvent, StreamStart
from common.msg_runner import Message as RunnerMessage
from common.streams import cost
from tests.unit.agent.test_agent_runs import FakeRunner


class FakeConn:
    """One manager connection: records what the agent sends on it, in order."""

    def __init__(self, name: str = "m1", auto_credit: bool = False) -> None:
        self.name = name
        self.sent: list[Message] = []
        self.up = True
        self.auto_credit = auto_credit  # return credit for everything at once
        self.table: StreamTable | None = None
        self._changed = asyncio.Event()

    async def send_stream(self, msg: Message) -> bool:
        if not self.up:
            return False
        self.sent.append(msg)
        self._changed.set()
        if self.auto_credit and self.table is not None and isinstance(msg, (StreamData,
                                                                           StreamEvent)):
            amount = cost(msg.data if isinstance(msg, StreamData) else msg.body)
            await self.table.dispatch(StreamCredit(stream_id=msg.stream_id, amount=amount),
                                      self)
        return True

    async def wait_for(self, pred: Any, timeout: float = 5.0) -> None:
        """Until ``pred(self)`` holds (woken by each message sent here)."""
        async with asyncio.timeout(timeout):
            while not pred(self):
                self._changed.clear()
                await self._changed.wait()

    def data(self, stream_id: str) -> bytes:
        return b"".join(m.data for m in self.sent
                        if isinstance(m, StreamData) and m.stream_id == stream_id)

    def events(self, stream_id: str) -> list[StreamEvent]:
        return [m for m in self.sent if isinstance(m, StreamEvent) and m.stream_id == stream_id]

    def closes(self, stream_id: str) -> list[str]:
        return [m.reason for m in self.sent
                if isinstance(m, StreamClose) and m.stream_id == stream_id]

    def credits(self, stream_id: str) -> int:
        return sum(m.amount for m in self.sent
                   if isinstance(m, StreamCredit) and m.stream_id == stream_id)


class PtyRunner:
    """Records the PTY messages the agent sends to the runner."""

    def __init__(self) -> None:
        self.sent: list[RunnerMessage] = []
        self._changed = asyncio.Event()

    async def send(self, msg: RunnerMessage) -> None:
        self.sent.append(msg)
        self._changed.set()

    async def wait_for(self, pred: Any, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not pred(self):
                self._changed.clear()
                await self._changed.wait()


class StreamRunner(FakeRunner):
    """The scripted runner of the run tests, telling when the agent sent it something."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Event()

    async def send(self, msg: RunnerMessage) -> None:
        await super().send(msg)
        self.changed.set()


@dataclass
class FakeKernel:
    kernel_id: str
    runs: KernelRuns
    terminals: Terminals
    runner: StreamRunner
    pty: PtyRunner
    busy: bool = False
    last_active: float = 0.0
    touches: int = 0

    def touch(self) -> None:
        self.touches += 1
        self.last_active = time.monotonic()

    async def runner_wait(self, pred: Any, timeout: float = 5.0) -> None:
        """Until ``pred()`` holds about what the runner was sent."""
        async with asyncio.timeout(timeout):
            while not pred():
                self.runner.changed.clear()
                await self.runner.changed.wait()


@dataclass
class FakeKernels:
    kernels: dict[str, FakeKernel] = field(default_factory=dict)

    def get(self, kernel_id: str) -> FakeKernel:
        try:
            return self.kernels[kernel_id]
        except KeyError:
            raise KernelNotFound(kernel_id) from None


def make_kernel(kernel_id: str = "k1", log_linger: float = 300.0) -> FakeKernel:
    runner = StreamRunner()
    runner.runs = KernelRuns(runner.send, runner.interrupt, log_linger=log_linger)
    pty = PtyRunner()
    return FakeKernel(kernel_id, runner.runs, Terminals(pty.send), runner, pty)


def make_table(*kernels: FakeKernel, starters: dict[str, Any] | None = None
               ) -> StreamTable:
    registry = FakeKernels({k.kernel_id: k for k in kernels})
    return StreamTable(registry, starters or STARTERS)  # type: ignore[arg-type]


def start(stream_id: str, kind: str, params: dict[str, Any], kernel_id: str = "k1"
          ) -> StreamStart:
    return StreamStart(stream_id=stream_id, kernel_id=kernel_id, kind=kind, params=params)
