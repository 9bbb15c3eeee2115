"""Runner faults on real Docker: a hung runner, long runs, an agent restart mid-run."""
from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from common.msg_agent import Execute, ExecuteResult, KernelCreated
from tests.integration.agent.harness import TOKEN, AgentHarness, FakeManager
from tests.integration.manager.conftest import wait_for

pytestmark = pytest.mark.integration

FAST_WATCHDOG = {"ready_timeout": 20, "ping_interval": 0.5, "unresponsive_timeout": 2}


async def execute(manager: FakeManager, kid: str, code: str, run_id: str, mode: str = "query",
                  flush: float = 10.0) -> ExecuteResult:
    reply = await manager.call(Execute(kernel_id=kid, run_id=run_id, mode=mode, code=code,
                                       flush_timeout=flush))
    assert isinstance(reply, ExecuteResult), reply
    return reply


def text(res: ExecuteResult, kind: str = "stdout") -> str:
    return "".join(d for k, d in res.console if k == kind)


async def created(manager: FakeManager, harness: AgentHarness) -> KernelCreated:
    reply = await manager.call(harness.create_msg())
    assert isinstance(reply, KernelCreated), reply
    return reply


async def stop_runner(container_id: str) -> None:
    """SIGSTOP the runner inside the container: the child of its init (docker-init)."""
    proc = await asyncio.create_subprocess_exec(
        "docker", "exec", container_id, "sh", "-c",
        "kill -STOP $(cat /proc/1/task/1/children)",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, (out, err)


async def test_stopped_runner_is_reported_and_removed(manager: FakeManager,
                                                      harness: AgentHarness) -> None:
    agent = await harness.start(runner=FAST_WATCHDOG)
    await manager.next_join()
    k = await created(manager, harness)
    rid = uuid.uuid4().hex
    res = await execute(manager, k.kernel_id, "import time\ntime.sleep(300)", rid, flush=0.2)
    assert res.status == "continued"
    waiting = asyncio.ensure_future(
        execute(manager, k.kernel_id, "", rid, mode="continue", flush=120))
    await stop_runner(k.container_id)
    t0 = time.monotonic()
    event = await asyncio.wait_for(manager.events.get(), 30)
    took = time.monotonic() - t0
    assert (event.kernel_id, event.reason) == (k.kernel_id, "runner-unresponsive")
    assert took < 2 + 3 * 0.5 + 5  # the deadline, two ping rounds, slack for a loaded host
    # the managers hear of it first, then the kernel is removed (no stop grace)
    res = await asyncio.wait_for(waiting, 15)  # the execute in flight ends with the removal
    assert (res.status, res.exit_code) == ("finished", -1)
    assert "stopped answering" in text(res, "stderr")
    async def removed() -> bool:
        return await harness.containers() == []
    await wait_for(removed, 15, "the hung kernel's container to be removed")
    assert agent.kernels.kernel_ids == [] and agent.pool.occupied.get_amount("mem") == 0


async def test_long_sleep_and_gil_bound_compute_are_not_hangs(manager: FakeManager,
                                                              harness: AgentHarness) -> None:
    await harness.start(runner=FAST_WATCHDOG)
    await manager.next_join()
    k = await created(manager, harness)
    res = await execute(manager, k.kernel_id, "import time\ntime.sleep(6)\nprint('slept')",
                        uuid.uuid4().hex, flush=30)
    assert (res.status, text(res)) == ("finished", "slept\n")
    # one C call holding the GIL for several seconds: the runner cannot answer pings,
    # but its container computes, so it is left alone
    code = ("import time\nt = time.time(); sum(range(10**7)); per = time.time() - t\n"
            "sum(range(int(10**7 * 6 / per)))\nprint('summed')")
    res = await execute(manager, k.kernel_id, code, uuid.uuid4().hex, flush=60)
    assert (res.status, text(res)) == ("finished", "summed\n")
    assert manager.events.empty()
    assert len(await harness.containers()) == 1


@pytest.mark.usefixtures("runner_with_status")
async def test_agent_restart_reattaches_a_running_run(manager: FakeManager,
                                                      harness: AgentHarness) -> None:
    first = await harness.start()
    await manager.next_join()
    k = await created(manager, harness)
    rid = uuid.uuid4().hex
    code = "import time\nfor i in range(40):\n    print(i, flush=True)\n    time.sleep(0.25)\n"
    res = await execute(manager, k.kernel_id, code, rid, flush=1.0)
    assert res.status == "continued" and text(res).startswith("0\n")
    await harness.stop(first)
    await asyncio.sleep(1.0)  # the run goes on while no agent listens
    await harness.start()
    await manager.next_join()
    seen = text(res)
    while True:
        res = await execute(manager, k.kernel_id, "", rid, mode="continue", flush=2)
        seen += text(res)
        if res.status != "continued":
            break
    assert (res.status, res.exit_code) == ("finished", 0)
    numbers = [int(n) for n in seen.split()]
    assert numbers[-1] == 39  # its later output and its end came through
    assert len(numbers) >= 30  # at most a few lines in the dead agent's buffers are lost
    after = await execute(manager, k.kernel_id, "print('next')", uuid.uuid4().hex)
    assert (after.status, text(after)) == ("finished", "next\n")


@pytest.mark.usefixtures("runner_with_status")
async def test_agent_restart_while_waiting_for_input(manager: FakeManager,
                                                     harness: AgentHarness) -> None:
    first = await harness.start()
    await manager.next_join()
    k = await created(manager, harness)
    rid = uuid.uuid4().hex
    res = await execute(manager, k.kernel_id, "print('hi', input('who? '))", rid)
    assert res.status == "waiting-input"
    await harness.stop(first)
    await harness.start()
    await manager.next_join()
    res = await execute(manager, k.kernel_id, "", rid, mode="continue", flush=5)
    assert res.status == "waiting-input"
    res = await execute(manager, k.kernel_id, "kraken", rid, mode="input")
    assert (res.status, text(res)) == ("finished", "hi kraken\n")


async def test_agent_restart_keeps_kernels_the_manager_did_not_drop(
        manager: FakeManager, harness: AgentHarness) -> None:
    first = await harness.start()
    await manager.next_join()
    k = await created(manager, harness)
    await execute(manager, k.kernel_id, "open('/home/work/mine.txt', 'w').write('x')",
                  uuid.uuid4().hex)
    await harness.stop(first)
    manager.keep = []  # a replica whose view is stale (outage, fresh replica)
    second = await harness.start()
    join = await manager.next_join()
    assert join.kernels == [k.kernel_id]
    await asyncio.sleep(1.0)  # joined and reconciled; nothing may be destroyed
    assert second.kernels.kernel_ids == [k.kernel_id]
    assert (harness.scratch_root / k.kernel_id / "mine.txt").exists()
    res = await execute(manager, k.kernel_id, "print(open('mine.txt').read())",
                        uuid.uuid4().hex)
    assert text(res) == "x\n"


class AgentProcess:
    """The agent as its own process (``python -m agent``), so it can be SIGKILLed."""

    def __init__(self, harness: AgentHarness, tmp: Path) -> None:
        cfg = harness.config()
        self.path = tmp / "agent.toml"
        self.path.write_text(
            f'agent_id = "{cfg.agent_id}"\nscratch_root = "{cfg.scratch_root}"\n'
            f'[manager]\nendpoints = ["{cfg.manager.endpoints[0]}"]\n'
            f'public_key = "{cfg.manager.public_key}"\njoin_token = "{TOKEN}"\n'
            f'[runner]\nready_timeout = 20\n')
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        self.procs.append(subprocess.Popen(
            [sys.executable, "-m", "agent", "-c", str(self.path)],
            cwd=Path(__file__).resolve().parents[3],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.usefixtures("runner_with_status")
async def test_agent_sigkill_mid_run_then_run_reattached(
        manager: FakeManager, harness: AgentHarness, tmp_path: Path) -> None:
    agents = AgentProcess(harness, tmp_path)
    agents.start()
    try:
        await manager.next_join(30)
        k = await created(manager, harness)
        rid = uuid.uuid4().hex
        code = "import time\nfor i in range(40):\n    print(i, flush=True)\n    time.sleep(0.25)\n"
        res = await execute(manager, k.kernel_id, code, rid, flush=1.0)
        assert res.status == "continued"
        agents.kill()  # no goodbye: its sockets die with it
        await asyncio.sleep(1.0)
        agents.start()
        join = await manager.next_join(30)
        assert join.kernels == [k.kernel_id]
        seen = text(res)
        while res.status == "continued":
            res = await execute(manager, k.kernel_id, "", rid, mode="continue", flush=2)
            seen += text(res)
        assert (res.status, res.exit_code) == ("finished", 0)
        numbers = [int(n) for n in seen.split()]
        assert numbers[-1] == 39 and len(numbers) >= 30
        after = await execute(manager, k.kernel_id, "print('next')", uuid.uuid4().hex)
        assert text(after) == "next\n"
    finally:
        agents.kill()
