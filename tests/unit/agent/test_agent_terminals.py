"""Terminals against a scripted runner: sharing, scrollback, respawn, slow clients."""
from __future__ import annotations

import asyncio

import pytest

from agent import terminals as terminals_mod
from agent.streams import StreamTable
from agent.terminals import GIVEN_UP, dropped_note
from common.errors import InvalidAPIParameters, RateLimitExceeded
from common.msg_agent import StreamClose, StreamControl, StreamCredit, StreamData, StreamResize
from common.msg_runner import PtyClose, PtyClosed, PtyInput, PtyOpen, PtyOutput, PtyResize
from common.streams import PTY_PENDING_BYTES, PTY_SCROLLBACK_BYTES, WINDOW_BYTES
from tests.unit.agent.stream_fakes import FakeConn, FakeKernel, make_kernel, make_table, start

CHUNK = 64 << 10


async def attach(table: StreamTable, conn: FakeConn, stream_id: str, term: str = "main",
                 rows: int = 24, cols: int = 80) -> None:
    await table.dispatch(start(stream_id, "pty", {"term": term, "rows": rows, "cols": cols}),
                         conn)


def opened(kernel: FakeKernel) -> list[PtyOpen]:
    return [m for m in kernel.pty.sent if isinstance(m, PtyOpen)]


def output(kernel: FakeKernel, data: bytes, runner_id: str | None = None) -> None:
    rid = runner_id or opened(kernel)[-1].stream_id
    kernel.terminals.on_runner_message(PtyOutput(stream_id=rid, data=data))


async def test_first_attach_opens_a_shell_and_every_client_sees_its_output() -> None:
    kernel = make_kernel()
    table = make_table(kernel)
    a, b = FakeConn("a", auto_credit=True), FakeConn("b", auto_credit=True)
    a.table = b.table = table
    await attach(table, a, "s1", rows=30, cols=100)
    await attach(table, b, "s2")
    assert [(m.rows, m.cols) for m in opened(kernel)] == [(30, 100)]  # one shell
    output(kernel, b"hello\r\n")
    await a.wait_for(lambda c: c.data("s1") == b"hello\r\n")
    await b.wait_for(lambda c: c.data("s2") == b"hello\r\n")
    await table.dispatch(StreamData(stream_id="s2", data=b"ls\r"), b)
    await b.wait_for(lambda c: c.credits("s2") == 3)
    rid = opened(kernel)[0].stream_id
    assert PtyInput(stream_id=rid, data=b"ls\r") in kernel.pty.sent
    assert PtyResize(stream_id=rid, rows=24, cols=80) in kernel.pty.sent  # the 2nd attach
    await table.dispatch(StreamResize(stream_id="s1", rows=50, cols=132), a)
    await kernel.pty.wait_for(lambda p: PtyResize(stream_id=rid, rows=50, cols=132) in p.sent)


async def test_reattach_gets_the_recent_scrollback_then_live_output() -> None:
    kernel = make_kernel()
    table = make_table(kernel)
    conn = FakeConn(auto_credit=True)
    conn.table = table
    await attach(table, conn, "s1")
    await table.dispatch(StreamClose(stream_id="s1", reason="tab closed"), conn)
    history = bytes(range(256)) * ((PTY_SCROLLBACK_BYTES + 5000) // 256 + 1)
    for i in range(0, len(history), 1000):  # nobody attached: the shell goes on
        output(kernel, history[i:i + 1000])
    await attach(table, conn, "s2")
    await conn.wait_for(lambda c: len(c.data("s2")) == PTY_SCROLLBACK_BYTES)
    assert conn.data("s2") == history[-PTY_SCROLLBACK_BYTES:]
    output(kernel, b"live")
    await conn.wait_for(lambda c: c.data("s2").endswith(b"live"))
    assert len(opened(kernel)) == 1  # the same shell


async def test_a_shell_that_exits_is_respawned_with_a_note(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    monkeypatch.setattr(terminals_mod, "QUICK_EXIT", 0.0)
    kernel = make_kernel()
    table = make_table(kernel)
    conn = FakeConn(auto_credit=True)
    conn.table = table
    await attach(table, conn, "s1")
    first = opened(kernel)[0].stream_id
    kernel.terminals.on_runner_message(PtyClosed(stream_id=first, exit_code=0))
    await conn.wait_for(lambda c: b"a new one is started" in c.data("s1"))
    assert len(opened(kernel)) == 2 and opened(kernel)[1].stream_id != first
    output(kernel, b"$ ")
    await conn.wait_for(lambda c: c.data("s1").endswith(b"$ "))
    assert conn.closes("s1") == []


async def test_a_shell_that_keeps_exiting_at_once_is_given_up() -> None:
    kernel = make_kernel()
    table = make_table(kernel)
    conn = FakeConn(auto_credit=True)
    conn.table = table
    await attach(table, conn, "s1")
    for _ in range(terminals_mod.MAX_QUICK_EXITS):
        rid = opened(kernel)[-1].stream_id
        count = len(opened(kernel))
        kernel.terminals.on_runner_message(PtyClosed(stream_id=rid, exit_code=127))
        await conn.wait_for(lambda c, n=count: len(opened(kernel)) > n or bool(c.closes("s1")))
    assert conn.closes("s1") == [GIVEN_UP]
    assert len(opened(kernel)) == terminals_mod.MAX_QUICK_EXITS  # no endless respawning


async def test_restart_control_replaces_the_shell_and_ignores_the_old_one() -> None:
    kernel = make_kernel()
    table = make_table(kernel)
    conn = FakeConn(auto_credit=True)
    conn.table = table
    await attach(table, conn, "s1")
    old = opened(kernel)[0].stream_id
    await table.dispatch(StreamControl(stream_id="s1", body={"type": "restart"}), conn)
    await conn.wait_for(lambda c: len(opened(kernel)) == 2)
    assert PtyClose(stream_id=old) in kernel.pty.sent
    output(kernel, b"from the old shell", runner_id=old)
    output(kernel, b"fresh")
    await conn.wait_for(lambda c: c.data("s1").endswith(b"fresh"))
    assert b"from the old shell" not in conn.data("s1")
    assert b"restarted" in conn.data("s1")


async def test_stdin_and_pings_count_as_activity() -> None:
    kernel = make_kernel()
    table = make_table(kernel)
    conn = FakeConn(auto_credit=True)
    conn.table = table
    await attach(table, conn, "s1")
    before = kernel.touches
    await table.dispatch(StreamControl(stream_id="s1", body={"type": "ping"}), conn)
    await table.dispatch(StreamData(stream_id="s1", data=b"x"), conn)
    await conn.wait_for(lambda c: c.credits("s1") == 1)
    assert kernel.touches == before + 2


async def test_a_slow_client_loses_output_with_a_note_and_slows_nobody() -> None:
    kernel = make_kernel()
    table = make_table(kernel)
    slow, fast = FakeConn("slow"), FakeConn("fast", auto_credit=True)
    fast.table = table
    await attach(table, slow, "slow")
    await attach(table, fast, "fast")
    chunks = (WINDOW_BYTES + 2 * PTY_PENDING_BYTES) // CHUNK
    for i in range(chunks):  # output taken at once (never waits), each client sends its own
        output(kernel, bytes([i % 251]) * CHUNK)
        await settle()
    everything = b"".join(bytes([i % 251]) * CHUNK for i in range(chunks))
    await fast.wait_for(lambda c: len(c.data("fast")) == len(everything))
    assert fast.data("fast") == everything
    # the slow client got a window, holds the next chunk, and queued PTY_PENDING_BYTES
    kept = WINDOW_BYTES // CHUNK + 1 + PTY_PENDING_BYTES // CHUNK
    assert len(slow.data("slow")) == WINDOW_BYTES
    output(kernel, b"also dropped")  # the queue is still full
    slow.auto_credit, slow.table = True, table  # the client catches up
    await table.dispatch(StreamCredit(stream_id="slow", amount=WINDOW_BYTES), slow)
    note = dropped_note((chunks - kept) * CHUNK + len(b"also dropped"))
    await slow.wait_for(lambda c: c.data("slow").endswith(note))
    output(kernel, b"after the drop")
    await slow.wait_for(lambda c: c.data("slow").endswith(b"after the drop"))
    assert slow.data("slow") == everything[:kept * CHUNK] + note + b"after the drop"


async def test_terminals_are_bounded_per_kernel_and_named_safely() -> None:
    kernel = make_kernel()
    table = make_table(kernel)
    conn = FakeConn(auto_credit=True)
    for i in range(terminals_mod.MAX_TERMINALS):
        await attach(table, conn, f"s{i}", term=f"t{i}")
    with pytest.raises(InvalidAPIParameters):
        await attach(table, conn, "one-more", term="another")
    with pytest.raises(InvalidAPIParameters):
        await attach(table, conn, "bad", term="../x")
    with pytest.raises(InvalidAPIParameters):
        await attach(table, conn, "huge", term="t0", rows=0)
    for i in range(terminals_mod.MAX_CLIENTS - 1):
        await attach(table, conn, f"again{i}", term="t0")
    with pytest.raises(RateLimitExceeded):
        await attach(table, conn, "crowd", term="t0")


async def test_a_lost_connection_detaches_and_the_shell_lives_on() -> None:
    kernel = make_kernel()
    table = make_table(kernel)
    conn = FakeConn(auto_credit=True)
    conn.table = table
    await attach(table, conn, "s1")
    table.connection_lost(conn)
    await settle()
    assert not kernel.terminals.by_name["main"].clients
    other = FakeConn("replica-2", auto_credit=True)
    other.table = table
    output(kernel, b"while away")
    await attach(table, other, "s1")
    await other.wait_for(lambda c: c.data("s1") == b"while away")
    assert len(opened(kernel)) == 1


async def test_terminals_die_with_their_kernel() -> None:
    kernel = make_kernel()
    table = make_table(kernel)
    conn = FakeConn(auto_credit=True)
    await attach(table, conn, "s1")
    table.kernel_gone("k1", "session terminated")
    await kernel.terminals.close()
    await conn.wait_for(lambda c: c.closes("s1") == ["session terminated"])
    assert kernel.terminals.by_name == {}


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)
