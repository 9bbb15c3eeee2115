"""CPU is shared on a real Docker engine: the agent offers its cores × cpu_overcommit,
a session's cores are a CPU limit in its HostConfig, and more sessions than the host
has cores run at once."""
from __future__ import annotations

import asyncio
import os

import pytest

from common.msg_agent import DestroyKernel, Execute, ExecuteResult, KernelCreated, KernelDestroyed
from tests.integration.agent.harness import AgentHarness, FakeManager

pytestmark = pytest.mark.integration


async def test_more_sessions_than_cores_each_with_a_cpu_limit(
        manager: FakeManager, harness: AgentHarness) -> None:
    cores = len(os.sched_getaffinity(0))
    await harness.start(resources={"cpu_overcommit": 50})
    join = await manager.next_join()
    assert join.available_slots["cpu"] == str(cores * 50)
    replies = await asyncio.gather(*(
        manager.call(harness.create_msg(session_name=f"s{i}",
                                        slots={"cpu": "1", "mem": str(128 << 20)}))
        for i in range(cores + 2)))
    assert all(isinstance(r, KernelCreated) for r in replies), replies
    kernels = [r.kernel_id for r in replies if isinstance(r, KernelCreated)]
    infos = await harness.containers()
    assert len(infos) == cores + 2 and all(i["State"]["Running"] for i in infos)
    for info in infos:
        host = info["HostConfig"]
        assert (host["NanoCpus"], host["CpuShares"]) == (1_000_000_000, 1024)
        assert not host.get("CpusetCpus")  # no cores reserved
        assert host["Memory"] == 128 << 20
    ran = await asyncio.gather(*(
        manager.call(Execute(kernel_id=k, run_id=f"r{n}", mode="query", code="print(1)",
                             flush_timeout=10.0)) for n, k in enumerate(kernels)))
    assert all(isinstance(r, ExecuteResult) and r.exit_code == 0 for r in ran), ran
    gone = await asyncio.gather(*(
        manager.call(DestroyKernel(kernel_id=k, reason="user-requested")) for k in kernels))
    assert all(isinstance(g, KernelDestroyed) for g in gone)
    assert await harness.containers() == []
