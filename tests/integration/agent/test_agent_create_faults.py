"""Faults during create on real Docker: destroy races, die events, agent shutdown.

Whatever interrupts a create, no container with this agent's label may be left, no
scratch dir, no occupied slot; the create request gets a clear error.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiodocker
import pytest

from common.msg_agent import (
    DestroyKernel,
    ErrorReply,
    KernelCreated,
    KernelDestroyed,
)
from tests.integration.agent.harness import AgentHarness, FakeManager

pytestmark = pytest.mark.integration

RACES = 20


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    """Poll an async predicate until it holds or the deadline passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


async def test_destroy_during_create_never_leaks(manager: FakeManager,
                                                 harness: AgentHarness) -> None:
    agent = await harness.start()
    await manager.next_join()
    outcomes: list[str] = []
    gate = asyncio.Semaphore(4)

    async def race(i: int) -> None:
        async with gate:
            msg = harness.create_msg(slots={"cpu": "0.25", "mem": str(256 << 20)})
            create = asyncio.ensure_future(manager.call(msg))
            await asyncio.sleep(0.1 * i)  # from "at once" to "after the runner is up"
            gone = await manager.call(DestroyKernel(kernel_id=msg.kernel_id,
                                                    reason="user-requested"))
            made = await create
        assert isinstance(gone, KernelDestroyed), gone
        if isinstance(made, KernelCreated):
            outcomes.append("created-then-destroyed")
        else:
            assert isinstance(made, ErrorReply), made
            assert made.error_type == "kernel-creation-cancelled", made
            assert gone.stats == {}
            outcomes.append("cancelled")
        assert not (harness.scratch_root / msg.kernel_id).exists()

    await asyncio.gather(*(race(i) for i in range(RACES)))
    assert await harness.containers() == []
    assert agent.kernels.kernel_ids == [] and agent.kernels.creating_ids == []
    assert agent.pool.occupied.get_amount("mem") == 0
    assert outcomes.count("cancelled") >= 1, outcomes  # at least "at once" hits the create


async def test_create_after_destroy_is_refused(manager: FakeManager,
                                               harness: AgentHarness) -> None:
    await harness.start()
    await manager.next_join()
    msg = harness.create_msg()
    gone = await manager.call(DestroyKernel(kernel_id=msg.kernel_id, reason="user-requested"))
    assert isinstance(gone, ErrorReply) and gone.error_type == "kernel-not-found"
    late = await manager.call(msg)  # e.g. from another replica, after the destroy
    assert isinstance(late, ErrorReply) and late.error_type == "kernel-creation-cancelled"
    assert await harness.containers() == []


async def test_creating_kernel_is_in_heartbeats_and_slots(
        manager: FakeManager, harness: AgentHarness, sleeper_image: str) -> None:
    agent = await harness.start(runner={"ready_timeout": 30})
    join = await manager.next_join()
    assert join.creating == []
    msg = harness.create_msg(image=sleeper_image)
    create = asyncio.ensure_future(manager.call(msg))

    async def seen() -> bool:
        beat = manager.heartbeats[-1] if manager.heartbeats else None
        return beat is not None and beat.creating == [msg.kernel_id]
    await eventually(seen)
    beat = manager.heartbeats[-1]
    assert msg.kernel_id not in beat.kernels
    assert int(beat.occupied_slots["mem"]) == 512 << 20
    assert agent.join_message().creating == [msg.kernel_id]
    gone = await manager.call(DestroyKernel(kernel_id=msg.kernel_id, reason="user-requested"))
    assert isinstance(gone, KernelDestroyed) and gone.stats == {}
    made = await create
    assert isinstance(made, ErrorReply) and made.error_type == "kernel-creation-cancelled"
    assert await harness.containers() == []
    assert manager.events.empty()  # a cancelled create is no termination


async def test_container_dying_during_create_leaves_nothing(
        manager: FakeManager, harness: AgentHarness, sleeper_image: str) -> None:
    agent = await harness.start(runner={"ready_timeout": 30})
    await manager.next_join()
    msg = harness.create_msg(image=sleeper_image)
    create = asyncio.ensure_future(manager.call(msg))

    async def running() -> bool:
        return any(c["State"]["Running"] for c in await harness.containers())
    await eventually(running)
    (info,) = await harness.containers()
    async with aiodocker.Docker() as docker:
        await docker.containers.container(info["Id"]).kill()
    made = await asyncio.wait_for(create, 20)
    assert isinstance(made, ErrorReply) and made.error_type == "kernel-creation-failed"
    assert await harness.containers() == []
    assert not (harness.scratch_root / msg.kernel_id).exists()
    assert agent.pool.occupied.get_amount("mem") == 0


async def test_agent_shutdown_during_create_leaves_nothing(
        manager: FakeManager, harness: AgentHarness, sleeper_image: str) -> None:
    agent = await harness.start(runner={"ready_timeout": 30})
    await manager.next_join()
    msg = harness.create_msg(image=sleeper_image)
    create = asyncio.ensure_future(manager.call(msg))

    async def running() -> bool:
        return bool(await harness.containers())
    await eventually(running)
    await asyncio.wait_for(harness.stop(agent), 30)
    made = await asyncio.wait_for(create, 20)
    assert isinstance(made, ErrorReply) and made.error_type == "agent-unavailable"
    assert await harness.containers() == []
    assert not (harness.scratch_root / msg.kernel_id).exists()
