"""The hung-runner watchdog: silence, then the container's CPU, decide."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from agent import watchdog
from agent.config import RunnerConfig
from common.errors import AgentTimeout
from common.msg_agent import KernelTerminated
from common.msg_runner import ControlAck, Message


class StubRunner:
    def __init__(self, answers: bool) -> None:
        self.answers = answers

    async def control(self, msg: Message, timeout: float) -> ControlAck:
        if not self.answers:
            raise AgentTimeout("silent")
        return ControlAck(detail="pong")


@dataclass
class StubKernel:
    kernel_id: str
    runner: StubRunner
    busy: bool = False
    last_pong: float = field(default_factory=time.monotonic)
    silent_cpu: tuple[float, int] | None = None


class StubRegistry:
    def __init__(self, *kernels: StubKernel) -> None:
        self.kernels = {k.kernel_id: k for k in kernels}
        self.cpu: dict[str, int] = {}
        self.killed: list[tuple[str, str]] = []

    def all(self) -> list[StubKernel]:
        return list(self.kernels.values())

    async def cpu_used(self, kernel_id: str) -> int | None:
        return self.cpu.get(kernel_id)

    async def kill(self, kernel_id: str, note: str) -> bool:
        self.killed.append((kernel_id, note))
        self.kernels.pop(kernel_id)
        return True


CFG = RunnerConfig(ping_interval=0.05, unresponsive_timeout=1)


async def check(reg: StubRegistry, events: list[KernelTerminated]) -> list[str]:
    async def sink(e: KernelTerminated) -> None:
        events.append(e)
    return await watchdog.check_once(reg, sink, CFG)  # type: ignore[arg-type]


def test_judge_needs_two_samples_and_tells_computing_from_hung() -> None:
    assert watchdog.judge(None, (1.0, 100)) == "wait"
    assert watchdog.judge((1.0, 100), None) == "wait"
    assert watchdog.judge((1.0, 100), (2.0, 100)) == "hung"
    assert watchdog.judge((1.0, 100), (2.0, 105)) == "hung"  # an idle init's crumbs
    assert watchdog.judge((1.0, 100), (2.0, 400)) == "computing"
    assert watchdog.judge((1.0, 100), (2.0, 1100)) == "computing"


def test_silent_skips_busy_kernels_and_can_be_off() -> None:
    now = time.monotonic()
    quiet = StubKernel("q", StubRunner(False), last_pong=now - 5)
    busy = StubKernel("b", StubRunner(False), busy=True, last_pong=now - 5)
    fresh = StubKernel("f", StubRunner(True), last_pong=now)
    assert watchdog.silent([quiet, busy, fresh], now, 1) == [quiet]  # type: ignore[list-item]
    assert watchdog.silent([quiet], now, 0) == []  # type: ignore[list-item]


async def test_a_stopped_runner_is_removed_and_reported() -> None:
    hung = StubKernel("h", StubRunner(False), last_pong=time.monotonic() - 2)
    ok = StubKernel("ok", StubRunner(True), last_pong=time.monotonic() - 2)
    reg = StubRegistry(hung, ok)
    reg.cpu = {"h": 500}
    events: list[KernelTerminated] = []
    assert await check(reg, events) == []  # first sample: wait
    assert await check(reg, events) == ["h"]  # no CPU used since: hung
    assert events == [KernelTerminated(kernel_id="h", reason="runner-unresponsive")]
    assert "stopped answering" in reg.killed[0][1]
    assert "ok" in reg.kernels and ok.silent_cpu is None  # it answered: no suspicion


async def test_a_silent_runner_whose_container_computes_is_left_alone() -> None:
    gil = StubKernel("g", StubRunner(False), last_pong=time.monotonic() - 2)
    reg = StubRegistry(gil)
    events: list[KernelTerminated] = []
    for cpu in (1000, 2000, 3000, 4000):
        reg.cpu["g"] = cpu
        assert await check(reg, events) == []
    assert events == [] and reg.killed == []
    gil.runner.answers = True  # the long C call returned
    assert await check(reg, events) == []
    assert gil.silent_cpu is None and time.monotonic() - gil.last_pong < 1


async def test_unknown_cpu_never_kills() -> None:
    k = StubKernel("u", StubRunner(False), last_pong=time.monotonic() - 2)
    reg = StubRegistry(k)
    events: list[Any] = []
    for _ in range(3):
        assert await check(reg, events) == []
    assert reg.killed == []
