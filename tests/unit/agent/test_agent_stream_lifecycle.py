"""The agent wires streams to its kernels: a restart or a destroy closes a kernel's
streams with a reason the manager can show, and its terminals go with it."""
from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from agent.backend import ContainerInfo
from agent.resources import ResourcePool
from agent.runner_client import RunnerClient
from agent.server import Agent
from common.msg_agent import DestroyKernel, ErrorReply, RestartKernel, StreamStarted
from common.msg_runner import Message, PtyOpen, RunnerStatus
from tests.unit.agent.fake_backend import FakeBackend, agent_config
from tests.unit.agent.stream_fakes import FakeConn, start


async def test_restart_and_destroy_close_streams_with_a_reason(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[Message] = []

    async def idle(self: RunnerClient, timeout: float = 0) -> RunnerStatus:
        return RunnerStatus()

    async def send(self: RunnerClient, msg: Message) -> None:
        sent.append(msg)

    async def ready(self: RunnerClient, timeout: float) -> None:
        return None
    monkeypatch.setattr(RunnerClient, "status", idle)
    monkeypatch.setattr(RunnerClient, "send", send)
    monkeypatch.setattr(RunnerClient, "wait_ready", ready)
    backend = FakeBackend()
    kid = str(uuid.uuid4())
    backend.containers["c0"] = ContainerInfo(
        container_id="c0", running=True, ip=backend.ip,
        labels={"ai.backend.kernel-id": kid, "kraken.slots": json.dumps({"cpu": "1"})})
    agent = Agent(agent_config(tmp_path / "scratch"), backend, ResourcePool(4, 1 << 33, []))
    conn = FakeConn()
    try:
        await agent.kernels.recover()
        reply = await agent.dispatch(start("t1", "pty", {"term": "main"}, kernel_id=kid),
                                     conn)  # type: ignore[arg-type]
        assert isinstance(reply, StreamStarted)
        assert [m.stream_id for m in sent if isinstance(m, PtyOpen)] == ["main.1"]
        refused = await agent.dispatch(start("t2", "pty", {}, kernel_id="nope"),
                                       conn)  # type: ignore[arg-type]
        assert isinstance(refused, ErrorReply) and refused.error_type == "kernel-not-found"

        await agent.dispatch(RestartKernel(kernel_id=kid))
        await conn.wait_for(lambda c: c.closes("t1") == ["kernel restarted"])
        assert agent.kernels.get(kid).terminals.by_name == {}  # the shell went with it

        reply = await agent.dispatch(start("t3", "pty", {"term": "main"}, kernel_id=kid),
                                     conn)  # type: ignore[arg-type]
        assert isinstance(reply, StreamStarted)  # a fresh terminal on the restarted kernel
        await agent.dispatch(DestroyKernel(kernel_id=kid, reason="user-requested"))
        await conn.wait_for(lambda c: c.closes("t3") == ["session terminated"])
        assert len(agent.streams) == 0
    finally:
        await agent.stop()
