"""Hostile console output against a real agent and the kraken/python image (issue 7).

The agent runs in this test process, so its memory is this process's VmRSS, sampled in a
thread while a session floods it. Bounds are generous (a loaded 2-core machine, a shared
test process) and still far below what the floods would hold if output were kept.
"""
from __future__ import annotations

import asyncio
import gc
import threading
import uuid
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from common.console import data_size
from common.limits import RUN_OUTPUT_BYTES
from common.msg_agent import DestroyKernel, Execute, ExecuteResult, KernelDestroyed
from tests.integration.agent.harness import AgentHarness, FakeManager
from tests.integration.agent.test_agent_docker import created

pytestmark = pytest.mark.integration

MiB = 1 << 20
GROWTH_BOUND = 300 * MiB  # what the agent may grow by while > 1.4 GB flows through it
AFTER_MARGIN = 96 * MiB  # how far above its baseline it may stay once the kernel is gone

FLOOD = """
import sys
from kernels.runner import media
for _ in range(30):
    media.html('<p>' + 'h' * 50_000_000)   # each too large for one message: the runner drops
for _ in range(300):
    media.html('<i>' + 'i' * 1_000_000)    # each passes the runner: the agent's budget drops
line = 'x' * 1_048_575 + '\\n'
for _ in range(200):
    sys.stdout.write(line)
"""

HOSTILE_RUNNER = r"""
import sys, zmq
from common.msg_runner import RUNNER_PROTOCOL, ConsoleOutput
ctx = zmq.Context()
out = ctx.socket(zmq.PUSH); out.bind("tcp://0.0.0.0:2001")
inp = ctx.socket(zmq.PULL); inp.bind("tcp://0.0.0.0:2000")
ctl = ctx.socket(zmq.ROUTER); ctl.bind("tcp://0.0.0.0:2002")
out.poll(60_000, zmq.POLLOUT)  # the agent has reconnected
big = RUNNER_PROTOCOL.encode(ConsoleOutput(run_id=sys.argv[1], items=[["html", "y" * (7 << 20)]]))
for _ in range(200):  # 1.4 GB of well-formed output that no outbox ever bounded
    out.send(big, copy=False)  # one buffer, sent 200 times: the kernel itself stays small
out.send(RUNNER_PROTOCOL.encode(ConsoleOutput(run_id=sys.argv[1], items=[["stdout", "done\n"]])))
out.send(b"\0" * (20 << 20))  # above MAXMSGSIZE: the agent drops this runner's connection
again = RUNNER_PROTOCOL.encode(ConsoleOutput(run_id=sys.argv[1], items=[["stdout", "again\n"]]))
while not ctl.poll(500):  # until the agent's shutdown (destroy): the agent dials again
    if out.poll(0, zmq.POLLOUT):
        out.send(again)
"""


def rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@contextmanager
def peak_rss() -> Iterator[list[int]]:
    """Yields a one-element list that holds the peak VmRSS seen until the block ends."""
    peak = [rss()]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.02):
            peak[0] = max(peak[0], rss())
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()


async def call(manager: FakeManager, kid: str, run_id: str, mode: str, code: str = "",
               flush: float = 2.0) -> ExecuteResult:
    reply = await manager.call(Execute(kernel_id=kid, run_id=run_id, mode=mode, code=code,
                                       flush_timeout=flush), timeout=120)
    assert isinstance(reply, ExecuteResult), reply
    return reply


def add(into: dict[str, int], more: dict[str, int]) -> None:
    for kind, n in more.items():
        into[kind] = into.get(kind, 0) + n


async def settle_rss(baseline: int) -> int:
    """RSS once the freed memory went back (polled, bounded), never a fixed sleep."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    now = rss()
    while now > baseline + AFTER_MARGIN and loop.time() < deadline:
        gc.collect()
        await asyncio.sleep(0.2)
        now = rss()
    return now


async def test_unpolled_flood_is_bounded_reported_and_freed(
        manager: FakeManager, harness: AgentHarness) -> None:
    agent = await harness.start()
    await manager.next_join()
    k = await created(manager, harness)
    gc.collect()
    baseline = rss()
    with peak_rss() as peak:
        first = await call(manager, k.kernel_id, "flood", "query", FLOOD)
        dropped = dict(first.dropped)
        if first.status != "finished":  # wait behind it without polling it
            res = await call(manager, k.kernel_id, "after", "query", "print('after')")
            while res.status != "finished":
                res = await call(manager, k.kernel_id, "after", "continue")
            last = await call(manager, k.kernel_id, "flood", "continue")
            assert last.status == "finished"
            add(dropped, last.dropped)
            console = last.console
        else:
            console = first.console
    assert peak[0] - baseline < GROWTH_BOUND, f"agent grew by {(peak[0] - baseline) / MiB:.0f} MiB"
    assert data_size(console) <= RUN_OUTPUT_BYTES + 4096
    assert dropped["html"] >= 30 * 50_000_000 and dropped["stdout"] > 150 * MiB
    assert "output dropped" in console[-1][1]
    runs = weakref.ref(agent.kernels.get(k.kernel_id).runs)
    gone = await manager.call(DestroyKernel(kernel_id=k.kernel_id, reason="user-requested"))
    assert isinstance(gone, KernelDestroyed)
    assert k.kernel_id not in agent.kernels.kernel_ids
    gc.collect()
    assert runs() is None, "the kernel's run state outlived it"
    after = await settle_rss(baseline)
    assert after - baseline < AFTER_MARGIN, f"agent kept {(after - baseline) / MiB:.0f} MiB"


async def test_a_hostile_runner_cannot_grow_the_agent(manager: FakeManager,
                                                      harness: AgentHarness) -> None:
    """User code replaces the runner (exec) and floods the agent directly: 1.4 GB of
    well-formed ConsoleOutput messages, then a frame above MAXMSGSIZE. The agent holds
    no more than the run's budget, drops that connection (and dials again: the kernel's
    output is not lost for good), and serves other kernels. The replacement answers no
    control pings, so the hung-runner watchdog is off here (it would rightly remove it)."""
    agent = await harness.start(runner={"ready_timeout": 30, "unresponsive_timeout": 0})
    await manager.next_join()
    k = await created(manager, harness)
    run_id = uuid.uuid4().hex
    code = (f"import os\nos.execv('/usr/bin/python3', ['python3', '-c', {HOSTILE_RUNNER!r}, "
            f"{run_id!r}])\n")
    gc.collect()
    baseline = rss()
    dropped: dict[str, int] = {}
    text = ""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 180
    with peak_rss() as peak:
        res = await call(manager, k.kernel_id, run_id, "query", code)
        while "again" not in text and loop.time() < deadline:
            assert data_size(res.console) <= RUN_OUTPUT_BYTES + 4096
            add(dropped, res.dropped)
            text += "".join(d for kind, d in res.console if kind == "stdout")
            res = await call(manager, k.kernel_id, run_id, "continue")
    assert "done" in text and "again" in text, f"the flood never finished: {text!r}"
    assert peak[0] - baseline < GROWTH_BOUND, f"agent grew by {(peak[0] - baseline) / MiB:.0f} MiB"
    assert dropped.get("html", 0) > 100 * 7 * MiB
    other = await created(manager, harness)
    res = await call(manager, other.kernel_id, "r", "query", "print(6 * 7)", flush=10)
    assert res.status == "finished" and res.console == [["stdout", "42\n"]]
    for kid in (k.kernel_id, other.kernel_id):
        gone = await manager.call(DestroyKernel(kernel_id=kid, reason="user-requested"))
        assert isinstance(gone, KernelDestroyed)
    assert agent.kernels.kernel_ids == []
    after = await settle_rss(baseline)
    assert after - baseline < AFTER_MARGIN, f"agent kept {(after - baseline) / MiB:.0f} MiB"
