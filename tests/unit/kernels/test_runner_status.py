"""The runner's status query and its output kept for an agent that reconnects."""
from __future__ import annotations

import time

import zmq

from common.msg_runner import (
    RUNNER_PROTOCOL,
    ConsoleOutput,
    ControlAck,
    FeedInput,
    GetStatus,
    Interrupt,
    Ping,
    RunFinished,
    RunnerStatus,
    RunQuery,
    WaitingInput,
)
from tests.unit.kernels.runner_client import RunnerProcess


def status(runner: RunnerProcess) -> RunnerStatus:
    reply = runner.client.control_reply(GetStatus())
    assert isinstance(reply, RunnerStatus)
    return reply


def wait_status(runner: RunnerProcess, state: str, timeout: float = 10.0) -> RunnerStatus:
    deadline = time.monotonic() + timeout
    while True:
        got = status(runner)
        if got.state == state or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def test_status_idle_running_and_waiting_input(runner: RunnerProcess) -> None:
    assert status(runner) == RunnerStatus(run_id="", state="idle")
    runner.client.send(RunQuery(run_id="slow", code="import time\ntime.sleep(120)"))
    assert wait_status(runner, "running") == RunnerStatus(run_id="slow", state="running")
    # a user sleeping is not a hang: the control path answers at once meanwhile
    t0 = time.monotonic()
    for _ in range(5):
        assert runner.client.control_reply(Ping(), timeout_ms=1000) == ControlAck(detail="pong")
    assert time.monotonic() - t0 < 2.0
    runner.client.control(Interrupt())
    runner.client.collect(runner.client.finish_of("slow"))
    assert status(runner).state == "idle"
    runner.client.send(RunQuery(run_id="ask", code="print(input('pin? '), 'ok')"))
    runner.client.collect(lambda m: isinstance(m, WaitingInput))
    assert status(runner) == RunnerStatus(run_id="ask", state="waiting-input", prompt="pin? ")
    runner.client.send(FeedInput(run_id="ask", text="1234"))
    run = runner.client.collect(runner.client.finish_of("ask"))
    assert run.text("stdout") == "1234 ok\n"
    assert status(runner).state == "idle"


def test_output_waits_for_an_agent_that_reconnects(runner: RunnerProcess) -> None:
    """An agent that goes away and comes back gets what the run printed meanwhile."""
    code = "import time\nfor i in range(30):\n    print(i, flush=True)\n    time.sleep(0.05)\n"
    runner.client.send(RunQuery(run_id="loop", code=code))
    runner.client.collect(lambda m: isinstance(m, ConsoleOutput))
    runner.client.output.close(linger=0)  # the agent dies
    time.sleep(2.0)  # the run ends while nobody listens (30 × 0.05 s)
    assert status(runner).state == "idle"
    ctx = zmq.Context.instance()
    fresh = ctx.socket(zmq.PULL)
    fresh.setsockopt(zmq.LINGER, 0)
    endpoint = runner.client.input.getsockopt_string(zmq.LAST_ENDPOINT)
    host, port = endpoint.rsplit(":", 1)
    fresh.connect(f"{host}:{int(port) + 1}")
    try:
        seen: list[str] = []
        while True:
            assert fresh.poll(10_000), "nothing came after the reconnect"
            msg, _ = RUNNER_PROTOCOL.decode(fresh.recv())
            if isinstance(msg, ConsoleOutput):
                seen.extend(d for k, d in msg.items if k == "stdout")
            if isinstance(msg, RunFinished):
                break
        lines = "".join(seen).split()
        assert lines[-1] == "29"  # the end of the run and its finish were kept
    finally:
        fresh.close(linger=0)
