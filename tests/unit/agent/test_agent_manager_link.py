"""The agent's manager links: fail fast toward a replica that is down, never let one
replica hold up another, and destroy at join only what a manager names."""
from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.asyncio

from agent.backend import ContainerInfo
from agent.manager_link import ManagerSession
from agent.resources import ResourcePool
from agent.runner_client import RunnerClient
from agent.server import Agent
from common.codec import Message
from common.link import RouterLink
from common.msg_agent import AGENT_PROTOCOL, Heartbeat, Join, JoinAccepted
from common.msg_runner import RunnerStatus
from tests.unit.agent.fake_backend import FakeBackend, agent_config


class FakeAgent:
    def __init__(self) -> None:
        self.joins = 0
        self.accepted: list[JoinAccepted] = []

    def join_message(self) -> Join:
        self.joins += 1
        return Join(agent_id="a", token="t", region="r", version="0", available_slots={},
                    images=[], kernels=[])

    async def heartbeat_message(self) -> tuple[Heartbeat, list[dict[str, Any]]]:
        return Heartbeat(agent_id="a", available_slots={}, occupied_slots={}, kernels=[]), []

    async def on_join_accepted(self, accepted: JoinAccepted, reported: list[str]) -> None:
        self.accepted.append(accepted)

    async def dispatch(self, msg: Message, session: ManagerSession) -> Message | None:
        return None

    def connection_lost(self, session: ManagerSession) -> None:
        return None


class Replica:
    """A manager replica that accepts joins and counts heartbeats."""

    def __init__(self, bind: str = "tcp://127.0.0.1:*") -> None:
        self.beats = 0
        self.link = RouterLink(AGENT_PROTOCOL, bind, self._on)
        self.link.start()

    async def _on(self, peer: bytes, msg: Message) -> Message | None:
        if isinstance(msg, Join):
            return JoinAccepted(heartbeat_interval=0.05, keep_kernels=[])
        if isinstance(msg, Heartbeat):
            self.beats += 1
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_join_to_a_down_replica_fails_fast_and_is_retried() -> None:
    port = free_port()
    agent = FakeAgent()
    session = ManagerSession(agent, f"tcp://127.0.0.1:{port}", None, request_timeout=30)
    session.start()
    replica: Replica | None = None
    try:
        await asyncio.sleep(1.0)
        assert agent.joins >= 2  # each try failed at once, not after request_timeout
        assert not session.joined.is_set()
        replica = Replica(f"tcp://127.0.0.1:{port}")  # the manager comes back
        t0 = time.monotonic()
        await asyncio.wait_for(session.joined.wait(), 10)
        assert time.monotonic() - t0 < 6  # within the backoff cap
    finally:
        await session.close()
        if replica is not None:
            await replica.link.close()


async def test_a_hung_replica_does_not_hold_up_heartbeats_to_another() -> None:
    ctx = zmq.asyncio.Context()
    hung = ctx.socket(zmq.ROUTER)  # accepts connections, never reads: a hung process
    hung.setsockopt(zmq.LINGER, 0)
    hung.bind("tcp://127.0.0.1:*")
    healthy = Replica()
    agent = FakeAgent()
    sessions = [ManagerSession(agent, hung.getsockopt_string(zmq.LAST_ENDPOINT), None,
                               request_timeout=0.5),
                ManagerSession(agent, healthy.link.endpoint, None, request_timeout=0.5)]
    for s in sessions:
        s.start()
    try:
        await asyncio.wait_for(sessions[1].joined.wait(), 5)
        start = healthy.beats
        await asyncio.sleep(1.0)
        assert healthy.beats - start >= 10  # ~20 expected at 0.05 s
        assert not sessions[0].joined.is_set()
    finally:
        for s in sessions:
            await s.close()
        await healthy.link.close()
        hung.close(linger=0)
        ctx.term()


async def test_join_destroys_only_kernels_named_in_drop(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    async def idle(self: RunnerClient, timeout: float = 0) -> RunnerStatus:
        return RunnerStatus()
    monkeypatch.setattr(RunnerClient, "status", idle)
    backend = FakeBackend()
    ids = [str(uuid.uuid4()) for _ in range(3)]
    for i, kid in enumerate(ids):
        backend.containers[f"c{i}"] = ContainerInfo(
            container_id=f"c{i}", running=True, ip=backend.ip,
            labels={"ai.backend.kernel-id": kid, "kraken.slots": json.dumps({"cpu": "1"})})
    agent = Agent(agent_config(tmp_path / "scratch"), backend, ResourcePool(8, 1 << 33, []))
    try:
        await agent.kernels.recover()
        assert agent.kernels.kernel_ids == sorted(ids)
        stale = JoinAccepted(heartbeat_interval=1, keep_kernels=[])  # knows none of them
        await agent.on_join_accepted(stale, ids)
        assert agent.kernels.kernel_ids == sorted(ids) and len(backend.containers) == 3
        explicit = JoinAccepted(heartbeat_interval=1, keep_kernels=ids[1:],
                                drop_kernels=[ids[0], str(uuid.uuid4())])
        await agent.on_join_accepted(explicit, ids)
        for _ in range(100):  # the drops run in the background
            if len(backend.containers) == 2:
                break
            await asyncio.sleep(0.01)
        assert agent.kernels.kernel_ids == sorted(ids[1:]) and len(backend.containers) == 2
    finally:
        await agent.stop()
