"""Two destroys of one kernel at once (a user's DELETE and a manager's reconciliation
retry) share one removal: both answer, nothing is closed twice."""
from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
import zmq.asyncio

from agent.backend import ContainerInfo
from agent.kernels import KernelRegistry
from agent.resources import ResourcePool
from agent.runner_client import RunnerClient
from common.msg_runner import RunnerStatus
from tests.unit.agent.fake_backend import FakeBackend, agent_config


async def test_concurrent_destroys_share_one_removal(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    async def idle(self: RunnerClient, timeout: float = 0) -> RunnerStatus:
        return RunnerStatus()
    monkeypatch.setattr(RunnerClient, "status", idle)
    backend = FakeBackend()
    kid = str(uuid.uuid4())
    backend.containers["c0"] = ContainerInfo(
        container_id="c0", running=True, ip=backend.ip,
        labels={"ai.backend.kernel-id": kid, "kraken.slots": json.dumps({"cpu": "1"})})
    zctx = zmq.asyncio.Context()
    pool = ResourcePool(4, 1 << 33, [])

    async def sink(event: object) -> None:
        return None
    registry = KernelRegistry(agent_config(tmp_path / "scratch"), backend, pool, zctx, sink)
    try:
        await registry.recover()
        assert registry.kernel_ids == [kid]
        first, second = await asyncio.wait_for(
            asyncio.gather(registry.destroy(kid), registry.destroy(kid)), 10)
        assert first == second  # the same stats, one removal
        assert registry.kernel_ids == [] and backend.containers == {}
        assert pool.occupied.get_amount("cpu") == 0
    finally:
        await registry.close()
        zctx.term()
