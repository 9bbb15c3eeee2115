"""Streamed execute: numbered events as the runner produces them, resume, expiry."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agent.stream_runs import RUN_FINISHED
from common.errors import InvalidAPIParameters, RunNotFound
from common.msg_agent import Execute, StreamControl, StreamStarted
from common.msg_runner import (
    ConsoleOutput,
    FeedInput,
    RunBatch,
    RunFinished,
    RunQuery,
    WaitingInput,
)
from common.streams import WINDOW_BYTES, cost
from tests.unit.agent.stream_fakes import FakeConn, make_kernel, make_table, start


def out(run_id: str, text: str) -> ConsoleOutput:
    return ConsoleOutput(run_id=run_id, items=[["stdout", text]])


def query(run_id: str = "r1", code: str = "loop()") -> dict[str, Any]:
    return {"mode": "query", "code": code, "options": None, "run_id": run_id}


def summary(conn: FakeConn, stream_id: str) -> list[tuple[int, str, Any, Any]]:
    return [(e.seq, e.body["status"], e.body["console"], e.body["exitCode"])
            for e in conn.events(stream_id)]


async def test_each_console_batch_is_an_event_numbered_from_one() -> None:
    kernel = make_kernel()
    table = make_table(kernel)
    conn = FakeConn()
    reply = await table.dispatch(start("s1", "execute", query()), conn)
    assert reply == StreamStarted(stream_id="s1", info={"run_id": "r1", "resumed": False})
    assert kernel.runner.sent == [RunQuery(run_id="r1", code="loop()")]
    kernel.runs.on_runner_message(out("r1", "1\n"))
    await conn.wait_for(lambda c: len(c.events("s1")) == 1)  # sent before the run ends
    kernel.runs.on_runner_message(out("r1", "2\n"))
    kernel.runs.on_runner_message(RunFinished(run_id="r1", phase="exec", exit_code=3))
    await conn.wait_for(lambda c: c.closes("s1") == [RUN_FINISHED])
    assert summary(conn, "s1") == [(1, "continued", [["stdout", "1\n"]], None),
                                   (2, "continued", [["stdout", "2\n"]], None),
                                   (3, "finished", [], 3)]
    assert kernel.touches >= 1


async def test_waiting_input_is_an_event_and_input_comes_as_control() -> None:
    kernel = make_kernel()
    table = make_table(kernel)
    conn = FakeConn()
    await table.dispatch(start("s1", "execute", query(code="input()")), conn)
    kernel.runs.on_runner_message(WaitingInput(run_id="r1", prompt="pin? ", is_password=True))
    await conn.wait_for(lambda c: len(c.events("s1")) == 1)
    assert summary(conn, "s1")[0][:2] == (1, "waiting-input")
    assert conn.events("s1")[0].body["options"] == {"is_password": True}
    await table.dispatch(StreamControl(stream_id="s1", body={"type": "input", "text": "42"}),
                         conn)
    await kernel.runner_wait(lambda: FeedInput(run_id="r1", text="42") in kernel.runner.sent)


async def test_batch_phases_use_the_rest_statuses() -> None:
    kernel = make_kernel()
    table = make_table(kernel)
    conn = FakeConn()
    params = {"mode": "batch", "code": "", "run_id": "b1",
              "options": {"build": "make", "exec": "./a.out"}}
    await table.dispatch(start("s1", "execute", params), conn)
    assert kernel.runner.sent == [RunBatch(run_id="b1", build="make", exec="./a.out")]
    kernel.runs.on_runner_message(out("b1", "cc\n"))
    kernel.runs.on_runner_message(RunFinished(run_id="b1", phase="build", exit_code=0))
    kernel.runs.on_runner_message(RunFinished(run_id="b1", phase="exec", exit_code=0))
    await conn.wait_for(lambda c: bool(c.closes("s1")))
    assert summary(conn, "s1") == [(1, "continued", [["stdout", "cc\n"]], None),
                                   (2, "build-finished", [], 0),
                                   (3, "finished", [], 0)]


async def test_resume_after_a_drop_replays_exactly_what_was_missed() -> None:
    kernel = make_kernel()
    table = make_table(kernel)
    first, second = FakeConn("replica-1"), FakeConn("replica-2")
    await table.dispatch(start("s1", "execute", query()), first)
    for i in (1, 2, 3):
        kernel.runs.on_runner_message(out("r1", f"{i}\n"))
    await first.wait_for(lambda c: len(c.events("s1")) == 3)
    table.connection_lost(first)  # the client saw only up to seq 2, say
    kernel.runs.on_runner_message(out("r1", "4\n"))  # the run goes on meanwhile
    reply = await table.dispatch(start("s9", "execute", {"run_id": "r1", "after_seq": 2}),
                                 second)
    assert reply == StreamStarted(stream_id="s9", info={"run_id": "r1", "resumed": True})
    await second.wait_for(lambda c: len(c.events("s9")) == 2)
    kernel.runs.on_runner_message(out("r1", "5\n"))
    kernel.runs.on_runner_message(RunFinished(run_id="r1", phase="exec", exit_code=0))
    await second.wait_for(lambda c: c.closes("s9") == [RUN_FINISHED])
    assert summary(second, "s9") == [(3, "continued", [["stdout", "3\n"]], None),
                                     (4, "continued", [["stdout", "4\n"]], None),
                                     (5, "continued", [["stdout", "5\n"]], None),
                                     (6, "finished", [], 0)]
    # a finished run can still be resumed from its start, within the linger time
    third = FakeConn("replica-3")
    await table.dispatch(start("s10", "execute", {"run_id": "r1", "after_seq": 0}), third)
    await third.wait_for(lambda c: c.closes("s10") == [RUN_FINISHED])
    assert [e.seq for e in third.events("s10")] == [1, 2, 3, 4, 5, 6]


async def test_a_dropped_stream_does_not_stop_the_run_nor_the_fifo() -> None:
    kernel = make_kernel()
    table = make_table(kernel)
    conn = FakeConn()
    await table.dispatch(start("s1", "execute", query()), conn)
    table.connection_lost(conn)
    rest = asyncio.ensure_future(kernel.runs.execute(Execute(
        kernel_id="k1", run_id="rest", mode="query", code="2", flush_timeout=5.0)))
    await asyncio.sleep(0)
    assert kernel.runs.active_run_id == "r1" and not rest.done()  # queued behind r1
    kernel.runs.on_runner_message(RunFinished(run_id="r1", phase="exec", exit_code=0))
    await kernel.runner_wait(lambda: RunQuery(run_id="rest", code="2") in kernel.runner.sent)
    kernel.runs.on_runner_message(out("rest", "two\n"))
    kernel.runs.on_runner_message(RunFinished(run_id="rest", phase="exec", exit_code=0))
    result = await asyncio.wait_for(rest, 5)
    assert (result.status, result.console) == ("finished", [["stdout", "two\n"]])


async def test_a_finished_run_expires_then_resume_is_refused() -> None:
    kernel = make_kernel(log_linger=0.05)
    table = make_table(kernel)
    conn = FakeConn()
    await table.dispatch(start("s1", "execute", query()), conn)
    run_log = kernel.runs.log_of("r1")
    kernel.runs.on_runner_message(RunFinished(run_id="r1", phase="exec", exit_code=0))
    await conn.wait_for(lambda c: bool(c.closes("s1")))
    while not run_log.freed:
        await asyncio.wait_for(run_log.changed(), 5)
    with pytest.raises(RunNotFound):
        await table.dispatch(start("s2", "execute", {"run_id": "r1", "after_seq": 1}), conn)
    with pytest.raises(RunNotFound):
        await table.dispatch(start("s3", "execute", {"run_id": "never", "after_seq": 0}), conn)


async def test_bad_params_and_run_ids_are_refused() -> None:
    kernel = make_kernel()
    table = make_table(kernel)
    conn = FakeConn()
    with pytest.raises(InvalidAPIParameters):
        await table.dispatch(start("s1", "execute", {"mode": "query", "code": 1,
                                                     "run_id": "r"}), conn)
    with pytest.raises(InvalidAPIParameters):
        await table.dispatch(start("s1", "execute", {"mode": "continue", "code": "",
                                                     "run_id": "r"}), conn)
    await table.dispatch(start("s1", "execute", query()), conn)
    with pytest.raises(InvalidAPIParameters, match="already exists"):
        await table.dispatch(start("s2", "execute", query()), conn)
    with pytest.raises(InvalidAPIParameters, match="no message"):
        await table.dispatch(start("s3", "execute", {"run_id": "r1", "after_seq": 7}), conn)
    with pytest.raises(InvalidAPIParameters, match="streamed"):
        await kernel.runs.execute(Execute(kernel_id="k1", run_id="r1", mode="continue",
                                          code="", flush_timeout=0.0))


async def test_a_resume_from_before_the_kept_events_says_what_is_missing() -> None:
    kernel = make_kernel()
    table = make_table(kernel)
    conn = FakeConn(auto_credit=True)
    await table.dispatch(start("s1", "execute", query()), conn)
    run_log = kernel.runs.log_of("r1")
    run_log.cap_bytes = 300  # a few events only
    for i in range(20):
        kernel.runs.on_runner_message(out("r1", f"line {i:02} " + "x" * 40 + "\n"))
    kernel.runs.on_runner_message(RunFinished(run_id="r1", phase="exec", exit_code=0))
    first_kept = run_log.first_seq
    assert first_kept > 2 and run_log.bytes <= 300
    other = FakeConn("replica-2")
    await table.dispatch(start("s2", "execute", {"run_id": "r1", "after_seq": 1}), other)
    await other.wait_for(lambda c: bool(c.closes("s2")))
    events = other.events("s2")
    assert [e.seq for e in events] == list(range(first_kept, 22))
    note = events[0].body["console"][0]
    assert note[0] == "stderr" and f"{first_kept - 2} earlier message(s)" in note[1]


async def test_big_output_is_split_into_events_that_fit_the_window() -> None:
    kernel = make_kernel()
    table = make_table(kernel)
    conn = FakeConn(auto_credit=True)
    conn.table = table
    await table.dispatch(start("s1", "execute", query()), conn)
    text = "é" * 300_000  # 600 kB of UTF-8
    kernel.runs.on_runner_message(ConsoleOutput(run_id="r1", items=[["stdout", text]]))
    kernel.runs.on_runner_message(RunFinished(run_id="r1", phase="exec", exit_code=0))
    await conn.wait_for(lambda c: bool(c.closes("s1")))
    events = conn.events("s1")
    assert len(events) > 2
    assert all(cost(e.body) <= WINDOW_BYTES for e in events)
    assert "".join(e.body["console"][0][1] for e in events[:-1]) + "".join(
        d for _, d in events[-1].body["console"]) == text
