"""Live stats rounds and the agent-id conflict at join, from the agent's side."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from agent import stats_report
from agent.manager_link import ManagerSession
from common.codec import Message
from common.errors import KernelNotFound
from common.link import RouterLink
from common.msg_agent import AGENT_PROTOCOL, ErrorReply, Join
from tests.unit.agent.test_agent_manager_link import FakeAgent


class Kernels:
    """What collect() reads of the kernel registry: ids and one sample per kernel."""

    def __init__(self, ids: list[str]) -> None:
        self.kernel_ids = ids
        self.running = 0
        self.most = 0

    async def stats(self, kernel_id: str) -> dict[str, int]:
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            if kernel_id == "gone":
                raise KernelNotFound(kernel_id)
            if kernel_id == "hung":
                await asyncio.Event().wait()
            await asyncio.sleep(0.01)
            return {"cpu_used": len(kernel_id)}
        finally:
            self.running -= 1


async def test_a_round_has_every_kernel_that_answered(monkeypatch: pytest.MonkeyPatch
                                                      ) -> None:
    monkeypatch.setattr(stats_report, "SAMPLE_TIMEOUT", 0.2)
    kernels = Kernels(["gone", "hung"] + [f"k{i}" for i in range(10)])
    got = await stats_report.collect(kernels, concurrency=3)  # type: ignore[arg-type]
    assert got == {f"k{i}": {"cpu_used": len(f"k{i}")} for i in range(10)}
    assert kernels.most == 3  # never more Docker stats calls at once than configured


async def test_a_taken_agent_id_is_logged_as_an_error_and_retried(
        caplog: pytest.LogCaptureFixture) -> None:
    joins = 0
    refused_twice = asyncio.Event()

    async def refuse(_peer: bytes, msg: Message) -> Message | None:
        nonlocal joins
        if isinstance(msg, Join):
            joins += 1
            if joins == 2:
                refused_twice.set()
            return ErrorReply(error_type="agent-id-conflict",
                              detail="This ID has already been registered: ...")
        return None

    replica = RouterLink(AGENT_PROTOCOL, "tcp://127.0.0.1:*", refuse)
    replica.start()
    session = ManagerSession(FakeAgent(), replica.endpoint, None, request_timeout=5)
    caplog.set_level(logging.ERROR, logger="agent.manager_link")
    session.start()
    try:
        await asyncio.wait_for(refused_twice.wait(), 10)  # it keeps trying
        assert not session.joined.is_set()
        errors: list[Any] = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert errors and "agent id 'a' is taken" in errors[0].getMessage()
        assert "already been registered" in errors[0].getMessage()
    finally:
        await session.close()
        await replica.close()
