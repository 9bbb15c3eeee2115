"""Fixtures: two jailed kernels started by a real agent on real Docker."""
from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from common.msg_agent import KernelCreated
from tests.integration.agent.harness import AgentHarness, FakeManager, require_docker_image


@pytest.fixture
async def jailed(tmp_path: Path) -> AsyncIterator[tuple[FakeManager, AgentHarness,
                                                         list[KernelCreated]]]:
    """(manager, harness, [kernel A, kernel B])."""
    require_docker_image()
    manager = FakeManager()
    harness = AgentHarness(manager, tmp_path / "scratch")
    try:
        await harness.start()
        await manager.next_join()
        kernels = []
        for _ in range(2):
            reply = await manager.call(harness.create_msg(slots={"cpu": "1", "mem": "1g"}))
            assert isinstance(reply, KernelCreated), reply
            kernels.append(reply)
        yield manager, harness, kernels
    finally:
        await harness.teardown()
        await manager.link.close()
