"""Runs an earlier agent process started, taken back after an agent restart."""
from __future__ import annotations

import asyncio

from agent.runs import REATTACHED_NOTE, UNKNOWN_RUNNER_NOTE, KernelRuns
from common.msg_agent import Execute
from common.msg_runner import (
    ConsoleOutput,
    FeedInput,
    Message,
    RunFinished,
    RunnerStatus,
    RunQuery,
    WaitingInput,
)


class Sent:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def send(self, msg: Message) -> None:
        self.messages.append(msg)

    async def interrupt(self) -> None:
        return None


def recovered() -> tuple[Sent, KernelRuns]:
    sent = Sent()
    return sent, KernelRuns(sent.send, sent.interrupt, recovered=True)


def ex(run_id: str, mode: str = "continue", code: str = "", flush: float = 0.05) -> Execute:
    return Execute(kernel_id="k", run_id=run_id, mode=mode, code=code, flush_timeout=flush)


def out(run_id: str, text: str) -> ConsoleOutput:
    return ConsoleOutput(run_id=run_id, items=[["stdout", text]])


async def test_running_run_is_reattached_and_the_next_run_waits_for_it() -> None:
    sent, runs = recovered()
    runs.on_runner_message(out("old", "kept while the agent was away\n"))  # before the status
    runs.reattach(RunnerStatus(run_id="old", state="running"))
    assert runs.active_run_id == "old"
    res = await runs.execute(ex("old"))
    assert (res.status, res.console) == ("continued", [  # and it says what may be missing
        ["stdout", "kept while the agent was away\n"], ["stderr", REATTACHED_NOTE]])
    new = await runs.execute(ex("new", mode="query", code="print(1)"))
    assert new.status == "continued" and sent.messages == []  # queued behind "old"
    runs.on_runner_message(out("old", "later\n"))
    runs.on_runner_message(RunFinished(run_id="old", phase="exec", exit_code=0))
    res = await runs.execute(ex("old"))
    assert (res.status, res.exit_code, res.console) == ("finished", 0, [["stdout", "later\n"]])
    await asyncio.sleep(0.01)
    assert sent.messages == [RunQuery(run_id="new", code="print(1)")]  # then it starts
    await runs.close()


async def test_waiting_input_is_reported_once_and_input_reaches_the_runner() -> None:
    sent, runs = recovered()
    runs.reattach(RunnerStatus(run_id="ask", state="waiting-input", prompt="pin? ",
                               is_password=True))
    runs.on_runner_message(WaitingInput(run_id="ask", prompt="pin? ", is_password=True))
    res = await runs.execute(ex("ask"))
    assert (res.status, res.options) == ("waiting-input", {"is_password": True})
    res = await runs.execute(ex("ask"))
    assert res.status == "continued"  # the duplicate prompt was not queued twice
    fed = asyncio.ensure_future(runs.execute(ex("ask", mode="input", code="1234", flush=5)))
    await asyncio.sleep(0.01)
    assert sent.messages == [FeedInput(run_id="ask", text="1234")]
    runs.on_runner_message(RunFinished(run_id="ask", phase="exec", exit_code=0))
    assert (await fed).status == "finished"


async def test_output_of_a_finished_run_never_blocks_the_queue() -> None:
    """A thread left behind by an old run prints after the restart: its output is
    kept under that run id, but the run is not made active."""
    sent, runs = recovered()
    runs.on_runner_message(out("ghost", "from a thread\n"))
    runs.reattach(RunnerStatus())  # the runner is idle
    assert runs.active_run_id is None
    await runs.execute(ex("new", mode="query", code="1"))
    assert sent.messages == [RunQuery(run_id="new", code="1")]
    assert (await runs.execute(ex("ghost"))).console == [["stdout", "from a thread\n"]]
    await runs.close()


async def test_a_run_that_finished_while_the_agent_was_away() -> None:
    _sent, runs = recovered()
    runs.on_runner_message(out("done", "tail\n"))
    runs.on_runner_message(RunFinished(run_id="done", phase="exec", exit_code=0))
    runs.reattach(RunnerStatus(run_id="done", state="running"))  # a status a moment stale
    assert runs.active_run_id is None
    res = await runs.execute(ex("done"))
    assert (res.status, res.console) == ("finished", [["stdout", "tail\n"]])


async def test_a_runner_that_cannot_say_is_noted_on_the_next_run() -> None:
    _sent, runs = recovered()
    runs.reattach(None)
    res = await runs.execute(ex("r", mode="query", code="1"))
    assert ["stderr", UNKNOWN_RUNNER_NOTE] in res.console
    await runs.close()


async def test_a_fresh_kernel_drops_output_of_unknown_runs() -> None:
    sent = Sent()
    runs = KernelRuns(sent.send, sent.interrupt)
    runs.on_runner_message(out("stranger", "x"))
    res = await runs.execute(ex("stranger", mode="query"))  # a new run, not a stranger's
    assert res.console == []
    await runs.close()
