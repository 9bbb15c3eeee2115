"""The agent's stream table: credit windows, routing per connection, ends of streams."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agent.streams import CONNECTION_LOST, StreamClosed, StreamSink, StreamTable
from common.errors import InvalidAPIParameters, KernelNotFound, KernelNotRunning
from common.msg_agent import (
    StreamClose,
    StreamControl,
    StreamCredit,
    StreamData,
    StreamResize,
    StreamStarted,
)
from common.streams import WINDOW_BYTES
from tests.unit.agent.stream_fakes import FakeConn, FakeKernel, make_kernel, make_table, start

CHUNK = 100 << 10


class Echo:
    """A test kind: remembers what it gets; ``gate`` holds on_data open."""

    def __init__(self, sink: StreamSink) -> None:
        self.sink = sink
        self.got: list[Any] = []
        self.closed: list[str] = []
        self.gate: asyncio.Event | None = None
        self.sending: asyncio.Task[None] | None = None
        self.sent_all = asyncio.Event()

    async def on_data(self, data: bytes) -> None:
        if self.gate is not None:
            await self.gate.wait()
        self.got.append(data)

    async def on_control(self, body: dict[str, Any]) -> None:
        self.got.append(body)

    async def on_resize(self, rows: int, cols: int) -> None:
        self.got.append((rows, cols))

    async def on_close(self, reason: str) -> None:
        self.closed.append(reason)

    def send_chunks(self, n: int) -> None:
        async def go() -> None:
            try:
                for i in range(n):
                    await self.sink.send_data(bytes([i]) * CHUNK)
                self.sent_all.set()
            except StreamClosed:
                pass
        self.sending = asyncio.ensure_future(go())


def echo_table(*kernels: FakeKernel) -> tuple[StreamTable, dict[str, Echo]]:
    handlers: dict[str, Echo] = {}

    async def starter(kernel: Any, params: dict[str, Any], sink: StreamSink
                      ) -> tuple[Echo, dict[str, Any]]:
        echo = handlers[params["name"]] = Echo(sink)
        return echo, {"name": params["name"]}

    return make_table(*(kernels or (make_kernel(),)), starters={"echo": starter}), handlers


async def settle() -> None:
    """Let every ready task of this in-memory setup run (no I/O is involved)."""
    for _ in range(50):
        await asyncio.sleep(0)


async def test_a_sender_stops_at_the_window_and_resumes_on_credit() -> None:
    table, handlers = echo_table()
    conn = FakeConn()
    reply = await table.dispatch(start("s1", "echo", {"name": "a"}), conn)
    assert reply == StreamStarted(stream_id="s1", info={"name": "a"})
    handlers["a"].send_chunks(5)
    await conn.wait_for(lambda c: len(c.data("s1")) == 2 * CHUNK)
    await settle()
    assert len(conn.data("s1")) == 2 * CHUNK  # a third chunk would exceed the window
    assert 3 * CHUNK > WINDOW_BYTES
    await table.dispatch(StreamCredit(stream_id="s1", amount=CHUNK), conn)
    await conn.wait_for(lambda c: len(c.data("s1")) == 3 * CHUNK)
    await settle()
    assert len(conn.data("s1")) == 3 * CHUNK
    await table.dispatch(StreamCredit(stream_id="s1", amount=3 * CHUNK), conn)
    await asyncio.wait_for(handlers["a"].sent_all.wait(), 5)
    assert conn.data("s1") == b"".join(bytes([i]) * CHUNK for i in range(5))


async def test_excess_credit_does_not_open_the_window_wider() -> None:
    table, handlers = echo_table()
    conn = FakeConn()
    await table.dispatch(start("s1", "echo", {"name": "a"}), conn)
    await table.dispatch(StreamCredit(stream_id="s1", amount=100 * WINDOW_BYTES), conn)
    handlers["a"].send_chunks(5)
    await conn.wait_for(lambda c: len(c.data("s1")) == 2 * CHUNK)
    await settle()
    assert len(conn.data("s1")) == 2 * CHUNK


async def test_credit_for_data_is_returned_after_the_handler_took_it() -> None:
    table, handlers = echo_table()
    conn = FakeConn()
    await table.dispatch(start("s1", "echo", {"name": "a"}), conn)
    gate = handlers["a"].gate = asyncio.Event()
    await table.dispatch(StreamData(stream_id="s1", data=b"x" * 1000), conn)
    await table.dispatch(StreamData(stream_id="s1", data=b"y" * 10), conn)
    await settle()
    assert conn.credits("s1") == 0 and handlers["a"].got == []
    gate.set()
    await conn.wait_for(lambda c: c.credits("s1") == 1010)
    assert handlers["a"].got == [b"x" * 1000, b"y" * 10]


async def test_messages_of_a_stream_reach_the_handler_in_order() -> None:
    table, handlers = echo_table()
    conn = FakeConn()
    await table.dispatch(start("s1", "echo", {"name": "a"}), conn)
    await table.dispatch(StreamData(stream_id="s1", data=b"1"), conn)
    await table.dispatch(StreamResize(stream_id="s1", rows=10, cols=20), conn)
    await table.dispatch(StreamControl(stream_id="s1", body={"type": "ping"}), conn)
    await table.dispatch(StreamData(stream_id="s1", data=b"2"), conn)
    await table.dispatch(StreamClose(stream_id="s1", reason="bye"), conn)
    await settle()
    assert handlers["a"].got == [b"1", (10, 20), {"type": "ping"}, b"2"]
    assert handlers["a"].closed == ["bye"]
    assert len(table) == 0


async def test_streams_belong_to_their_connection() -> None:
    table, handlers = echo_table()
    a, b = FakeConn("a"), FakeConn("b")
    await table.dispatch(start("s1", "echo", {"name": "on-a"}), a)
    await table.dispatch(start("s1", "echo", {"name": "on-b"}), b)  # same id, other replica
    await table.dispatch(StreamData(stream_id="s1", data=b"for b"), b)
    handlers["on-a"].send_chunks(1)
    await a.wait_for(lambda c: len(c.data("s1")) == CHUNK)
    await b.wait_for(lambda c: c.credits("s1") == 5)
    assert handlers["on-b"].got == [b"for b"] and handlers["on-a"].got == []
    assert b.data("s1") == b"" and a.credits("s1") == 0


async def test_a_lost_connection_ends_its_streams_only() -> None:
    table, handlers = echo_table()
    a, b = FakeConn("a"), FakeConn("b")
    await table.dispatch(start("s1", "echo", {"name": "on-a"}), a)
    await table.dispatch(start("s2", "echo", {"name": "on-b"}), b)
    handlers["on-a"].send_chunks(5)  # blocked at the window when the connection goes
    await a.wait_for(lambda c: len(c.data("s1")) == 2 * CHUNK)
    table.connection_lost(a)
    await settle()
    assert handlers["on-a"].closed == [CONNECTION_LOST]
    sending = handlers["on-a"].sending
    assert sending is not None and sending.done()  # the sender was released, not stuck
    assert handlers["on-b"].closed == [] and len(table) == 1
    await table.dispatch(StreamData(stream_id="s1", data=b"late"), a)  # unknown now: ignored
    await settle()
    assert handlers["on-a"].got == []


async def test_a_failed_send_ends_the_stream_as_connection_lost() -> None:
    table, handlers = echo_table()
    conn = FakeConn()
    await table.dispatch(start("s1", "echo", {"name": "a"}), conn)
    conn.up = False
    handlers["a"].send_chunks(1)
    await settle()
    assert handlers["a"].closed == [CONNECTION_LOST] and len(table) == 0


async def test_start_is_refused_for_reused_ids_unknown_kinds_and_kernels() -> None:
    kernel = make_kernel()
    table, _ = echo_table(kernel)
    conn = FakeConn()
    await table.dispatch(start("s1", "echo", {"name": "a"}), conn)
    with pytest.raises(InvalidAPIParameters, match="already open"):
        await table.dispatch(start("s1", "echo", {"name": "b"}), conn)
    with pytest.raises(InvalidAPIParameters, match="kind"):
        await table.dispatch(start("s2", "telnet", {}), conn)
    with pytest.raises(KernelNotFound):
        await table.dispatch(start("s3", "echo", {"name": "c"}, kernel_id="nope"), conn)
    kernel.busy = True
    with pytest.raises(KernelNotRunning):
        await table.dispatch(start("s4", "echo", {"name": "d"}), conn)
    with pytest.raises(InvalidAPIParameters):
        await table.dispatch(start("bad id!", "echo", {"name": "e"}), conn)
    assert len(table) == 1


async def test_a_closed_stream_id_can_be_started_again() -> None:
    table, handlers = echo_table()
    conn = FakeConn()
    await table.dispatch(start("s1", "echo", {"name": "a"}), conn)
    await table.dispatch(StreamClose(stream_id="s1"), conn)
    await settle()
    reply = await table.dispatch(start("s1", "echo", {"name": "b"}), conn)
    assert isinstance(reply, StreamStarted)


async def test_a_destroyed_kernel_closes_its_streams_with_a_reason() -> None:
    k1, k2 = make_kernel("k1"), make_kernel("k2")
    table, handlers = echo_table(k1, k2)
    conn = FakeConn()
    await table.dispatch(start("s1", "echo", {"name": "a"}, kernel_id="k1"), conn)
    await table.dispatch(start("s2", "echo", {"name": "b"}, kernel_id="k2"), conn)
    table.kernel_gone("k1", "session terminated")
    await conn.wait_for(lambda c: c.closes("s1") == ["session terminated"])
    await settle()
    assert handlers["a"].closed == ["session terminated"]
    assert conn.closes("s2") == [] and len(table) == 1


async def test_a_manager_flooding_past_its_window_loses_the_stream() -> None:
    table, handlers = echo_table()
    conn = FakeConn()
    await table.dispatch(start("s1", "echo", {"name": "a"}), conn)
    handlers["a"].gate = asyncio.Event()  # the handler never takes anything
    for _ in range(3 * WINDOW_BYTES // CHUNK):
        await table.dispatch(StreamData(stream_id="s1", data=b"z" * CHUNK), conn)
    await conn.wait_for(lambda c: len(c.closes("s1")) == 1)
    assert "window" in conn.closes("s1")[0] and len(table) == 0
