"""The agent on a real Docker engine, driven over a real CurveZMQ agent link."""
from __future__ import annotations

import asyncio
import subprocess
import uuid

import aiodocker
import pytest

from common.msg_agent import (
    Ack,
    DestroyKernel,
    ErrorReply,
    Execute,
    ExecuteResult,
    InterruptKernel,
    KernelCreated,
    KernelDestroyed,
    Rejoin,
    RestartKernel,
)
from jail.policy import KERNEL_GID, KERNEL_UID
from tests.integration.agent.harness import IMAGE, TOKEN, AgentHarness, FakeManager

pytestmark = pytest.mark.integration


async def run(manager: FakeManager, kid: str, code: str, mode: str = "query",
              run_id: str | None = None, flush: float = 10.0) -> ExecuteResult:
    reply = await manager.call(Execute(kernel_id=kid, run_id=run_id or uuid.uuid4().hex,
                                       mode=mode, code=code, flush_timeout=flush))
    assert isinstance(reply, ExecuteResult), reply
    return reply


def stdout(res: ExecuteResult) -> str:
    return "".join(d for k, d in res.console if k == "stdout")


async def created(manager: FakeManager, harness: AgentHarness, **over: object) -> KernelCreated:
    reply = await manager.call(harness.create_msg(**over))
    assert isinstance(reply, KernelCreated), reply
    return reply


async def test_join_create_execute_destroy(manager: FakeManager, harness: AgentHarness) -> None:
    await harness.start()
    join = await manager.next_join()
    assert join.agent_id == harness.agent_id and join.token == TOKEN
    assert int(join.available_slots["cpu"]) >= 1 and int(join.available_slots["mem"]) > 0
    assert IMAGE in [i["name"] for i in join.images]
    k = await created(manager, harness, slots={"cpu": "2", "mem": str(8 << 30)})
    assert k.slots == {"cpu": "2", "mem": str(2 << 30)}  # maxmem=2g caps the request
    (info,) = await harness.containers()
    labels = info["Config"]["Labels"]
    assert labels["ai.backend.kernel-id"] == k.kernel_id
    assert labels["ai.backend.owner"] == "AKIATESTTESTTESTTEST"
    assert info["State"]["Running"] and info["Config"]["User"] == f"{KERNEL_UID}:{KERNEL_GID}"
    assert info["HostConfig"]["Memory"] == info["HostConfig"]["MemorySwap"] == 2 << 30
    assert info["HostConfig"]["NanoCpus"] == 2_000_000_000
    res = await run(manager, k.kernel_id, "import os; print('hello', os.environ['GREETING'])")
    assert (res.status, res.exit_code, stdout(res)) == ("finished", 0, "hello hi\n")
    await asyncio.sleep(0.5)
    assert manager.heartbeats and k.kernel_id in manager.heartbeats[-1].kernels
    gone = await manager.call(DestroyKernel(kernel_id=k.kernel_id, reason="user-requested"))
    assert isinstance(gone, KernelDestroyed) and gone.stats["cpu_used"] > 0
    assert set(gone.stats) >= {"mem_max_bytes", "net_rx_bytes", "io_cur_scratch_size"}
    assert await harness.containers() == []
    assert not (harness.scratch_root / k.kernel_id).exists()


async def test_input_and_interrupt(manager: FakeManager, harness: AgentHarness) -> None:
    await harness.start()
    await manager.next_join()
    k = await created(manager, harness)
    rid = uuid.uuid4().hex
    res = await run(manager, k.kernel_id, "name = input('who? ')\nprint('hi', name)", run_id=rid)
    assert res.status == "waiting-input" and res.options == {"is_password": False}
    res = await run(manager, k.kernel_id, "kraken", mode="input", run_id=rid)
    assert res.status == "finished" and "hi kraken" in stdout(res)
    rid = uuid.uuid4().hex
    res = await run(manager, k.kernel_id, "import time\ntime.sleep(60)", run_id=rid, flush=0.5)
    assert res.status == "continued"
    assert isinstance(await manager.call(InterruptKernel(kernel_id=k.kernel_id)), Ack)
    res = await run(manager, k.kernel_id, "", mode="continue", run_id=rid, flush=10)
    assert res.status == "finished"
    assert "KeyboardInterrupt" in "".join(str(d) for _, d in res.console)


async def test_restart_keeps_home(manager: FakeManager, harness: AgentHarness) -> None:
    await harness.start()
    await manager.next_join()
    k = await created(manager, harness)
    await run(manager, k.kernel_id, "open('/home/work/keep.txt', 'w').write('kept')")
    await run(manager, k.kernel_id, "marker = 42")
    assert isinstance(await manager.call(RestartKernel(kernel_id=k.kernel_id)), Ack)
    res = await run(manager, k.kernel_id, "print(open('keep.txt').read(), 'marker' in dir())")
    assert stdout(res) == "kept False\n"  # files survive, the interpreter is fresh
    await asyncio.sleep(0.5)
    assert manager.events.empty()  # an asked-for restart is no termination


async def test_unknown_image_leaves_nothing(manager: FakeManager, harness: AgentHarness) -> None:
    agent = await harness.start()
    await manager.next_join()
    reply = await manager.call(harness.create_msg(image="kraken/nope:latest"))
    assert isinstance(reply, ErrorReply) and reply.error_type == "image-not-found"
    assert await harness.containers() == []
    assert agent.pool.occupied.get_amount("cpu") == 0


async def test_runner_never_ready_leaves_nothing(manager: FakeManager, harness: AgentHarness,
                                                 sleeper_image: str) -> None:
    agent = await harness.start(runner={"ready_timeout": 2})
    await manager.next_join()
    msg = harness.create_msg(image=sleeper_image)
    reply = await manager.call(msg)
    assert isinstance(reply, ErrorReply) and reply.error_type == "agent-timeout"
    assert await harness.containers() == []
    assert not (harness.scratch_root / msg.kernel_id).exists()
    assert list(harness.scratch_root.iterdir()) == []  # no image file left either
    assert str(harness.scratch_root) not in subprocess.run(
        ["losetup", "-a"], capture_output=True, text=True).stdout  # nor a loop device
    assert agent.pool.occupied.get_amount("mem") == 0


async def test_bad_requests_get_clear_errors(manager: FakeManager,
                                             harness: AgentHarness) -> None:
    await harness.start()
    await manager.next_join()
    reply = await manager.call(harness.create_msg(kernel_id="../../etc"))
    assert isinstance(reply, ErrorReply) and reply.error_type == "invalid-api-params"
    reply = await manager.call(harness.create_msg(environ={"HOME": "/root"}))
    assert isinstance(reply, ErrorReply) and reply.error_type == "invalid-api-params"
    reply = await manager.call(harness.create_msg(slots={"cpu": "1", "cuda.device": "1"}))
    assert isinstance(reply, ErrorReply) and reply.error_type == "no-agent-available"
    reply = await manager.call(Execute(kernel_id=str(uuid.uuid4()), run_id="r", mode="query",
                                       code=""))
    assert isinstance(reply, ErrorReply) and reply.error_type == "kernel-not-found"
    assert await harness.containers() == []
    assert list(harness.scratch_root.iterdir()) == []


async def test_agent_restart_readopts_then_only_drop_kernels_destroys(
        manager: FakeManager, harness: AgentHarness) -> None:
    first = await harness.start()
    await manager.next_join()
    k = await created(manager, harness)
    await run(manager, k.kernel_id, "x = 'still here'")
    await harness.stop(first)
    assert len(await harness.containers()) == 1  # the container outlives the agent
    second = await harness.start()
    join = await manager.next_join()
    assert join.kernels == [k.kernel_id]
    assert second.pool.occupied.get_amount("mem") == 512 << 20
    res = await run(manager, k.kernel_id, "print(x)")
    assert stdout(res) == "still here\n"
    manager.keep = []  # a stale replica that does not know the kernel: nothing happens
    await manager.link.send(manager.peer, Rejoin())  # type: ignore[arg-type]
    rejoin = await manager.next_join()
    assert rejoin.kernels == [k.kernel_id]
    await asyncio.sleep(0.5)
    assert len(await harness.containers()) == 1 and second.kernels.kernel_ids == [k.kernel_id]
    manager.drop = [k.kernel_id]  # an explicit drop destroys it
    await manager.link.send(manager.peer, Rejoin())  # type: ignore[arg-type]
    await manager.next_join()
    scratch = harness.scratch_root / k.kernel_id
    for _ in range(100):  # the drop runs in the background after the join
        if not await harness.containers() and not scratch.exists():
            break
        await asyncio.sleep(0.1)
    assert await harness.containers() == []
    assert not scratch.exists()
    assert second.kernels.kernel_ids == []


async def test_container_killed_from_outside_is_reported(
        manager: FakeManager, harness: AgentHarness) -> None:
    agent = await harness.start()
    await manager.next_join()
    k = await created(manager, harness)
    async with aiodocker.Docker() as docker:
        await docker.containers.container(k.container_id).kill()
    event = await asyncio.wait_for(manager.events.get(), 20)
    assert (event.kernel_id, event.reason, event.exit_code) == (
        k.kernel_id, "self-terminated", 137)
    assert await harness.containers() == []
    assert not (harness.scratch_root / k.kernel_id).exists()
    assert agent.kernels.kernel_ids == []


async def test_out_of_memory_is_reported_as_oom_killed(
        manager: FakeManager, harness: AgentHarness) -> None:
    await harness.start()
    await manager.next_join()
    k = await created(manager, harness, slots={"cpu": "1", "mem": str(96 << 20)})
    res = await run(manager, k.kernel_id, "x = bytearray(512 << 20); x[::4096] = b'1' * len(x[::4096])")
    assert res.status == "finished" and res.exit_code == -1
    event = await asyncio.wait_for(manager.events.get(), 20)
    assert (event.kernel_id, event.reason) == (k.kernel_id, "oom-killed")
    assert await harness.containers() == []
