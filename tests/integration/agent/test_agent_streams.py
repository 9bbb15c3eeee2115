"""Streams on a real kernel container: a terminal and a streamed execute (agent link v2)."""
from __future__ import annotations

import uuid

import pytest

from common.msg_agent import (
    DestroyKernel,
    KernelCreated,
    KernelDestroyed,
    Message,
    StreamClose,
    StreamControl,
    StreamData,
    StreamEvent,
    StreamResize,
    StreamStart,
    StreamStarted,
)
from tests.integration.agent.harness import AgentHarness, FakeManager

pytestmark = pytest.mark.integration

LOOP = ("import time\n"
        "for i in range(3):\n"
        "    print('tick', i, flush=True)\n"
        "    time.sleep(0.4)\n")


async def kernel(manager: FakeManager, harness: AgentHarness) -> str:
    await harness.start()
    await manager.next_join()
    reply = await manager.call(harness.create_msg())
    assert isinstance(reply, KernelCreated), reply
    return reply.kernel_id


def closed(msgs: list[Message]) -> bool:
    return any(isinstance(m, StreamClose) for m in msgs)


async def test_terminal_echo_resize_respawn_and_end(manager: FakeManager,
                                                    harness: AgentHarness) -> None:
    kid = await kernel(manager, harness)
    reply = await manager.call(StreamStart(stream_id="t1", kernel_id=kid, kind="pty",
                                           params={"term": "main", "rows": 24, "cols": 80}))
    assert reply == StreamStarted(stream_id="t1", info={"term": "main"})
    await manager.send(StreamData(stream_id="t1", data=b"echo $((6*7))\r"))
    await manager.wait_stream("t1", lambda _: b"42\r\n" in manager.stream_data("t1"))

    await manager.send(StreamResize(stream_id="t1", rows=33, cols=101))
    await manager.send(StreamData(stream_id="t1", data=b"stty size\r"))
    await manager.wait_stream("t1", lambda _: b"33 101" in manager.stream_data("t1"))

    # a second client (say, after a dropped WebSocket) gets the scrollback, then live output
    await manager.call(StreamStart(stream_id="t2", kernel_id=kid, kind="pty",
                                   params={"term": "main", "rows": 33, "cols": 101}))
    await manager.wait_stream("t2", lambda _: b"33 101" in manager.stream_data("t2"))
    await manager.send(StreamClose(stream_id="t2", reason="tab closed"))

    await manager.send(StreamControl(stream_id="t1", body={"type": "restart"}))
    await manager.wait_stream("t1", lambda _: b"the shell was restarted" in
                              manager.stream_data("t1"))
    await manager.send(StreamData(stream_id="t1", data=b"echo fresh$((2*4))\r"))
    await manager.wait_stream("t1", lambda _: b"fresh8" in manager.stream_data("t1"))

    await manager.send(StreamData(stream_id="t1", data=b"exit\r"))
    await manager.wait_stream("t1", lambda _: b"a new one is started" in
                              manager.stream_data("t1"))
    await manager.send(StreamData(stream_id="t1", data=b"echo again$((1+1))\r"))
    await manager.wait_stream("t1", lambda _: b"again2" in manager.stream_data("t1"))

    gone = await manager.call(DestroyKernel(kernel_id=kid, reason="user-requested"))
    assert isinstance(gone, KernelDestroyed)
    msgs = await manager.wait_stream("t1", closed)
    assert [m.reason for m in msgs if isinstance(m, StreamClose)] == ["session terminated"]


async def test_streamed_execute_arrives_in_several_events(manager: FakeManager,
                                                          harness: AgentHarness) -> None:
    kid = await kernel(manager, harness)
    run_id = uuid.uuid4().hex
    reply = await manager.call(StreamStart(
        stream_id="x1", kernel_id=kid, kind="execute",
        params={"mode": "query", "code": LOOP, "options": None, "run_id": run_id}))
    assert reply == StreamStarted(stream_id="x1", info={"run_id": run_id, "resumed": False})
    msgs = await manager.wait_stream("x1", closed)
    events = [m for m in msgs if isinstance(m, StreamEvent)]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[-1].body["status"] == "finished" and events[-1].body["exitCode"] == 0
    live = [e for e in events[:-1] if e.body["console"]]
    assert len(live) >= 2  # output came while the run went on, not all at the end
    text = "".join(d for e in events for k, d in e.body["console"] if k == "stdout")
    assert text == "tick 0\ntick 1\ntick 2\n"

    # another replica resumes after the first event: exactly the rest, in order
    again = await manager.call(StreamStart(stream_id="x2", kernel_id=kid, kind="execute",
                                           params={"run_id": run_id, "after_seq": 1}))
    assert isinstance(again, StreamStarted) and again.info["resumed"] is True
    resumed = await manager.wait_stream("x2", closed)
    assert [(m.seq, m.body) for m in resumed if isinstance(m, StreamEvent)] == \
        [(e.seq, e.body) for e in events[1:]]


async def test_streamed_execute_waits_for_input_from_the_stream(manager: FakeManager,
                                                                harness: AgentHarness) -> None:
    kid = await kernel(manager, harness)
    await manager.call(StreamStart(
        stream_id="in1", kernel_id=kid, kind="execute",
        params={"mode": "query", "code": "x = input('pin? ')\nprint('got', x)",
                "options": None, "run_id": uuid.uuid4().hex}))
    await manager.wait_stream("in1", lambda msgs: any(
        isinstance(m, StreamEvent) and m.body["status"] == "waiting-input" for m in msgs))
    await manager.send(StreamControl(stream_id="in1", body={"type": "input", "text": "7"}))
    msgs = await manager.wait_stream("in1", closed)
    events = [m for m in msgs if isinstance(m, StreamEvent)]
    text = "".join(d for e in events for k, d in e.body["console"] if k == "stdout")
    assert "pin? " in text and "got 7\n" in text
    assert events[-1].body["status"] == "finished"
