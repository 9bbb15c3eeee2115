"""The run state machine against a scripted fake runner."""
from __future__ import annotations

import asyncio

import pytest

from agent.runs import KEEP_FINISHED, KernelRuns, OutputLimits
from common.errors import InvalidAPIParameters
from common.limits import MAX_STREAM_CHARS
from common.msg_agent import Execute
from common.msg_runner import (
    ConsoleOutput,
    FeedInput,
    Message,
    RunBatch,
    RunFinished,
    RunQuery,
    WaitingInput,
)


class FakeRunner:
    """Records what the agent sends; the test plays the runner's part."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.interrupts = 0
        self.runs: KernelRuns | None = None
        self.script: dict[str, list[Message]] = {}

    async def send(self, msg: Message) -> None:
        self.sent.append(msg)
        assert self.runs is not None
        for reply in self.script.pop(getattr(msg, "run_id", "") + ":" + msg.msg_type, []):
            self.runs.on_runner_message(reply)

    async def interrupt(self) -> None:
        self.interrupts += 1


def make(timeout: float = 0.0,
         limits: OutputLimits | None = None) -> tuple[FakeRunner, KernelRuns]:
    fake = FakeRunner()
    fake.runs = KernelRuns(fake.send, fake.interrupt, timeout, limits)
    return fake, fake.runs


def ex(run_id: str, mode: str = "query", code: str = "", flush: float = 0.5,
       options: dict | None = None) -> Execute:
    return Execute(kernel_id="k", run_id=run_id, mode=mode, code=code, flush_timeout=flush,
                   options=options)


async def test_query_returns_finished_with_merged_console() -> None:
    fake, runs = make()
    fake.script["r1:run-query"] = [
        ConsoleOutput(run_id="r1", items=[["stdout", "a"], ["stdout", "b\n"]]),
        ConsoleOutput(run_id="r1", items=[["stderr", "oops\n"], ["stdout", "c"]]),
        RunFinished(run_id="r1", phase="exec", exit_code=0),
    ]
    res = await runs.execute(ex("r1", code="print(1)"))
    assert res.status == "finished" and res.exit_code == 0
    assert res.console == [["stdout", "ab\n"], ["stderr", "oops\n"], ["stdout", "c"]]
    assert fake.sent == [RunQuery(run_id="r1", code="print(1)")]


async def test_flush_timeout_gives_continued_then_finished() -> None:
    fake, runs = make()
    fake.script["r1:run-query"] = [ConsoleOutput(run_id="r1", items=[["stdout", "x"]])]
    res = await runs.execute(ex("r1", flush=0.05))
    assert (res.status, res.console, res.exit_code) == ("continued", [["stdout", "x"]], None)
    runs.on_runner_message(ConsoleOutput(run_id="r1", items=[["stdout", "y"]]))
    runs.on_runner_message(RunFinished(run_id="r1", phase="exec", exit_code=3))
    res = await runs.execute(ex("r1", mode="continue"))
    assert (res.status, res.console, res.exit_code) == ("finished", [["stdout", "y"]], 3)


async def test_continue_wakes_as_soon_as_the_run_finishes() -> None:
    _, runs = make()
    await runs.execute(ex("r1", flush=0.0))
    loop = asyncio.get_running_loop()
    loop.call_later(0.02, runs.on_runner_message,
                    RunFinished(run_id="r1", phase="exec", exit_code=0))
    started = loop.time()
    res = await runs.execute(ex("r1", mode="continue", flush=5.0))
    assert res.status == "finished"
    assert loop.time() - started < 1.0


async def test_input_round_trip() -> None:
    fake, runs = make()
    fake.script["r1:run-query"] = [WaitingInput(run_id="r1", prompt="pw", is_password=True)]
    res = await runs.execute(ex("r1", code="input()"))
    assert res.status == "waiting-input" and res.options == {"is_password": True}
    fake.script["r1:feed-input"] = [
        ConsoleOutput(run_id="r1", items=[["stdout", "got it\n"]]),
        RunFinished(run_id="r1", phase="exec", exit_code=0)]
    res = await runs.execute(ex("r1", mode="input", code="secret"))
    assert fake.sent[-1] == FeedInput(run_id="r1", text="secret")
    assert res.status == "finished" and res.console == [["stdout", "got it\n"]]


async def test_runs_are_served_fifo() -> None:
    fake, runs = make()
    first = await runs.execute(ex("r1", flush=0.01))
    second = await runs.execute(ex("r2", flush=0.01))
    assert first.status == second.status == "continued"
    assert second.console == []
    assert [m.run_id for m in fake.sent] == ["r1"]  # r2 waits for r1
    runs.on_runner_message(RunFinished(run_id="r1", phase="exec", exit_code=0))
    await asyncio.sleep(0)
    assert [m.run_id for m in fake.sent] == ["r1", "r2"]
    runs.on_runner_message(ConsoleOutput(run_id="r2", items=[["stdout", "two"]]))
    runs.on_runner_message(RunFinished(run_id="r2", phase="exec", exit_code=0))
    assert (await runs.execute(ex("r1", mode="continue"))).status == "finished"
    res = await runs.execute(ex("r2", mode="continue"))
    assert res.status == "finished" and res.console == [["stdout", "two"]]


async def test_batch_reports_each_phase() -> None:
    fake, runs = make()
    fake.script["b:run-batch"] = [
        ConsoleOutput(run_id="b", items=[["stdout", "cleaning"]]),
        RunFinished(run_id="b", phase="clean", exit_code=0),
        ConsoleOutput(run_id="b", items=[["stdout", "building"]]),
        RunFinished(run_id="b", phase="build", exit_code=1),
        ConsoleOutput(run_id="b", items=[["stdout", "running"]]),
        RunFinished(run_id="b", phase="exec", exit_code=127),
    ]
    res = await runs.execute(ex("b", mode="batch", options={"build": "make", "exec": "./a"}))
    assert isinstance(fake.sent[0], RunBatch) and fake.sent[0].build == "make"
    assert (res.status, res.exit_code, res.console) == ("clean-finished", 0, [["stdout", "cleaning"]])
    res = await runs.execute(ex("b", mode="continue"))
    assert (res.status, res.exit_code, res.console) == ("build-finished", 1, [["stdout", "building"]])
    res = await runs.execute(ex("b", mode="continue"))
    assert (res.status, res.exit_code, res.console) == ("finished", 127, [["stdout", "running"]])


async def test_unknown_run_and_bad_mode_are_rejected() -> None:
    _, runs = make()
    with pytest.raises(InvalidAPIParameters, match="unknown runId"):
        await runs.execute(ex("nope", mode="continue"))
    with pytest.raises(InvalidAPIParameters, match="unknown runId"):
        await runs.execute(ex("nope", mode="input", code="x"))
    with pytest.raises(InvalidAPIParameters, match="mode"):
        await runs.execute(ex("r", mode="explode"))


async def test_finished_run_is_forgotten_after_it_was_read() -> None:
    fake, runs = make()
    fake.script["r1:run-query"] = [RunFinished(run_id="r1", phase="exec", exit_code=0)]
    assert (await runs.execute(ex("r1"))).status == "finished"
    with pytest.raises(InvalidAPIParameters):
        await runs.execute(ex("r1", mode="continue"))


async def test_exec_timeout_interrupts_and_lets_the_next_run_start() -> None:
    fake, runs = make(timeout=0.05)
    res = await runs.execute(ex("slow", flush=2.0))
    assert res.status == "exec-timeout" and res.exit_code is None
    await asyncio.sleep(0)
    assert fake.interrupts == 1
    queued = await runs.execute(ex("next", flush=0.01))
    assert queued.status == "continued" and len(fake.sent) == 1
    runs.on_runner_message(RunFinished(run_id="slow", phase="exec", exit_code=1))
    await asyncio.sleep(0)
    assert [m.run_id for m in fake.sent] == ["slow", "next"]
    await runs.close()


async def test_container_death_finishes_runs_with_minus_one() -> None:
    _, runs = make()
    await runs.execute(ex("r1", flush=0.0))
    await runs.execute(ex("r2", flush=0.0))
    runs.fail_all("the kernel container exited")
    for rid in ("r1", "r2"):
        res = await runs.execute(ex(rid, mode="continue"))
        assert res.status == "finished" and res.exit_code == -1
        assert "container exited" in res.console[-1][1]


async def test_console_is_truncated_per_stream_per_call_with_a_note() -> None:
    fake, runs = make()
    big = "x" * (MAX_STREAM_CHARS - 10)
    fake.script["r1:run-query"] = [
        ConsoleOutput(run_id="r1", items=[["stdout", big], ["stderr", "e" * 100],
                                          ["stdout", "y" * 50], ["media", ["text/plain", "m"]]]),
        RunFinished(run_id="r1", phase="exec", exit_code=0)]
    res = await runs.execute(ex("r1"))
    stdout = "".join(d for k, d in res.console if k == "stdout")
    assert len(stdout) == MAX_STREAM_CHARS
    assert res.console[1] == ["stderr", "e" * 100]
    assert ["media", ["text/plain", "m"]] in res.console
    assert res.dropped == {"stdout": 40}
    assert res.console[-1][0] == "stderr" and "40 bytes of stdout" in res.console[-1][1]


async def test_an_unpolled_flood_is_held_within_the_run_budget() -> None:
    fake, runs = make(limits=OutputLimits(run_bytes=1000, kernel_bytes=5000))
    await runs.execute(ex("r1", flush=0.0))
    html = "<p>" + "h" * 297  # 300 bytes
    for _ in range(30):
        runs.on_runner_message(ConsoleOutput(run_id="r1", items=[["html", html]]))
    for _ in range(30):
        runs.on_runner_message(ConsoleOutput(run_id="r1", items=[["stdout", "s" * 100]]))
    assert runs.held_bytes == 1000
    res = await runs.execute(ex("r1", mode="continue", flush=0.0))
    assert [k for k, _ in res.console] == ["html"] * 3 + ["stdout", "stderr"]
    assert res.dropped == {"html": 27 * 300, "stdout": 29 * 100}
    assert runs.held_bytes == 0  # the window was handed out
    runs.on_runner_message(ConsoleOutput(run_id="r1", items=[["html", html]]))
    res = await runs.execute(ex("r1", mode="continue", flush=0.0))
    assert res.console == [["html", html]] and res.dropped == {}


async def test_runs_of_one_kernel_share_the_kernel_budget() -> None:
    _, runs = make(limits=OutputLimits(run_bytes=1000, kernel_bytes=1500))
    await runs.execute(ex("r1", flush=0.0))
    await runs.execute(ex("r2", flush=0.0))  # queued behind r1
    runs.on_runner_message(ConsoleOutput(run_id="r1", items=[["stdout", "z" * 1000]]))
    runs.on_runner_message(RunFinished(run_id="r1", phase="exec", exit_code=0))
    await asyncio.sleep(0)  # r2 starts
    assert runs.active_run_id == "r2"
    runs.on_runner_message(ConsoleOutput(run_id="r2", items=[["stdout", "z" * 1000]]))
    runs.on_runner_message(RunFinished(run_id="r2", phase="exec", exit_code=0))
    assert runs.held_bytes == 1500
    r1 = await runs.execute(ex("r1", mode="continue"))
    r2 = await runs.execute(ex("r2", mode="continue"))
    assert len(r1.console[0][1]) == 1000 and r1.dropped == {}
    assert len(r2.console[0][1]) == 500 and r2.dropped == {"stdout": 500}
    assert runs.held_bytes == 0 and runs.run_count == 0


async def test_malformed_items_and_runner_drops_are_reported() -> None:
    fake, runs = make()
    fake.script["r1:run-query"] = [
        ConsoleOutput(run_id="r1", items=[["stdout", "ok"], "junk", [1, 2, 3], ["html"]],
                      dropped={"stdout": 5, "html": 7, "bad": "x"}),  # type: ignore[dict-item]
        ConsoleOutput(run_id="r1", items="not a list"),  # type: ignore[arg-type]
        RunFinished(run_id="r1", phase="exec", exit_code=0)]
    res = await runs.execute(ex("r1"))
    assert res.console[0] == ["stdout", "ok"]
    assert res.dropped["stdout"] == 5 and res.dropped["html"] == 7
    assert res.dropped["invalid"] > 0 and "bad" not in res.dropped


async def test_closing_frees_every_run() -> None:
    fake, runs = make()
    for i in range(5):
        await runs.execute(ex(f"r{i}", flush=0.0))
    runs.on_runner_message(ConsoleOutput(run_id="r0", items=[["stdout", "x" * 10_000]]))
    assert runs.run_count == 5 and runs.held_bytes == 10_000
    runs.fail_all("the kernel was destroyed")
    await runs.close()
    assert runs.run_count == 0 and runs.held_bytes == 0 and runs.active_run_id is None


async def test_evicted_unread_results_release_their_bytes() -> None:
    fake, runs = make()
    for i in range(KEEP_FINISHED + 4):
        rid = f"r{i}"
        fake.script[f"{rid}:run-query"] = [
            ConsoleOutput(run_id=rid, items=[["stdout", "x" * 100]]),
            RunFinished(run_id=rid, phase="exec", exit_code=0)]
        await runs.execute(ex(rid, flush=0.0))
    assert runs.run_count <= KEEP_FINISHED + 1
    assert runs.held_bytes == 100 * runs.run_count


def test_output_limits_come_from_the_agent_config() -> None:
    from agent.config import AgentConfig

    base = {"manager": {"endpoints": ["tcp://m:1"], "join_token": "t"}}
    cfg = AgentConfig.model_validate(base)
    assert (cfg.runs.max_output, cfg.runs.max_kernel_output) == (8 << 20, 32 << 20)
    cfg = AgentConfig.model_validate({**base, "runs": {"max_output": "1m",
                                                       "max_kernel_output": 4096}})
    assert (cfg.runs.max_output, cfg.runs.max_kernel_output) == (1 << 20, 4096)
    with pytest.raises(ValueError):
        AgentConfig.model_validate({**base, "runs": {"max_output": "0"}})
