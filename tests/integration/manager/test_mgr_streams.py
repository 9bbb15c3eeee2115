"""The streaming WebSockets of seed 004 §2.12 on the real app, relayed to a fake agent
over agent link v2: terminal, streamed execute (and resume), events from another
replica, service proxies, refusals before the upgrade, hostile agents, disconnects,
session ends, credit flow control and frame rate limits."""
from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from aiohttp import ClientWebSocketResponse, ClientWSTimeout, WSMsgType, WSServerHandshakeError

from common.msg_agent import (
    ErrorReply,
    StreamClose,
    StreamControl,
    StreamCredit,
    StreamData,
    StreamEvent,
    StreamResize,
)
from common.streams import DEFAULT_TERM, WINDOW_BYTES
from manager.api import stream_ws
from manager.api.keys import EVENTS, STREAMS
from manager.db.tables import keypair_policies
from manager.events import EVENTS_CHANNEL
from tests.integration.manager.conftest import FakeAgent, Harness, wait_for

Keys = tuple[str, str]


async def _ws(h: Harness, path: str, keys: Keys | None = None, **kw: Any
              ) -> ClientWebSocketResponse:
    return await h.client.ws_connect(path, headers=h.headers("GET", path, keys), **kw)


async def _refused(h: Harness, path: str, keys: Keys | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """A GET that asks for the upgrade; the answer's status and problem body."""
    hdrs = h.headers("GET", path, keys) if headers is None else headers
    hdrs.update({"Connection": "Upgrade", "Upgrade": "websocket",
                 "Sec-WebSocket-Version": "13",
                 "Sec-WebSocket-Key": base64.b64encode(b"0123456789abcdef").decode()})
    resp = await h.client.get(path, headers=hdrs)
    return resp.status, await resp.json(content_type=None)


async def _running(h: Harness, name: str = "sess-1") -> FakeAgent:
    fake = h.agents[0] if h.agents else await h.agent()
    assert (await h.create(name))[0] == 201
    return fake


async def _frame(ws: ClientWebSocketResponse, timeout: float = 10.0) -> Any:
    msg = await ws.receive(timeout)
    assert msg.type == WSMsgType.TEXT, (msg.type, msg.data, msg.extra)
    return orjson.loads(msg.data)


async def _closed(ws: ClientWebSocketResponse, code: int | None = None) -> None:
    """The server closes the socket (with ``code`` in its close frame, when given)."""
    msg = await ws.receive(10.0)
    if code is None:
        assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING), msg
    else:
        assert msg.type == WSMsgType.CLOSE and msg.data == code, msg


# ---- terminal ------------------------------------------------------------------------


async def test_pty_round_trip_and_commands(harness: Harness) -> None:
    h = harness
    fake = await _running(h)
    ws = await _ws(h, "/stream/kernel/sess-1/pty")
    stream = await fake.next_stream()
    assert stream.start.kind == "pty"
    assert stream.start.params == {"term": DEFAULT_TERM, "rows": 24, "cols": 80}
    await ws.send_str(orjson.dumps({"type": "stdin",
                                    "chars": base64.b64encode(b"ls\r").decode()}).decode())
    got = await stream.next()
    assert isinstance(got, StreamData) and got.data == b"ls\r"
    await stream.send_data(b"\x1b[1mfile.txt\x1b[0m\r\n")
    assert await _frame(ws) == {"type": "out", "data": base64.b64encode(
        b"\x1b[1mfile.txt\x1b[0m\r\n").decode()}
    await ws.send_str('{"type": "resize", "rows": 40, "cols": 120}')
    got = await stream.next()
    assert isinstance(got, StreamResize) and (got.rows, got.cols) == (40, 120)
    for kind in ("ping", "restart"):
        await ws.send_str(orjson.dumps({"type": kind}).decode())
        got = await stream.next()
        assert isinstance(got, StreamControl) and got.body == {"type": kind}
    # bad frames are answered, not fatal
    for bad in ("not json", '{"type": "stdin", "chars": "***"}', '{"type": "fly"}',
                '{"type": "resize", "rows": 0, "cols": 80}', "[1, 2]"):
        await ws.send_str(bad)
        frame = await _frame(ws)
        assert frame["type"] == "error" and frame["data"], bad
    await ws.send_str(orjson.dumps({"type": "stdin", "chars": "aGk="}).decode())
    got = await stream.next()
    assert isinstance(got, StreamData) and got.data == b"hi"
    await ws.close()
    got = await stream.next()
    assert isinstance(got, StreamClose)  # the agent hears the client left
    await wait_for(lambda: len(h.app[STREAMS]) == 0, what="the relay to go")


async def test_pty_named_terminal_under_the_version_prefix(harness: Harness) -> None:
    h = harness
    fake = await _running(h)
    ws = await _ws(h, "/v4/stream/kernel/sess-1/pty?service=second&rows=50&cols=100")
    stream = await fake.next_stream()
    assert stream.start.params == {"term": "second", "rows": 50, "cols": 100}
    await stream.close("the shell was killed")
    assert await _frame(ws) == {"type": "error", "data": "the shell was killed"}
    await _closed(ws)


# ---- streamed execute ----------------------------------------------------------------


async def test_execute_stream_input_and_final_status(harness: Harness) -> None:
    h = harness
    fake = await _running(h)
    ws = await _ws(h, "/stream/kernel/sess-1/execute")
    await ws.send_json({"code": "name = input('who? ')", "mode": "query", "options": {}})
    stream = await fake.next_stream()
    params = stream.start.params
    assert stream.start.kind == "execute" and params["mode"] == "query"
    assert params["code"] == "name = input('who? ')" and params["run_id"]
    run_id = params["run_id"]
    await stream.send_event(1, {"status": "continued", "console": [["stdout", "who? "]]})
    await stream.send_event(2, {"status": "waiting-input", "console": [],
                                "options": {"is_password": False}})
    first, second = await _frame(ws), await _frame(ws)
    assert first == {"status": "continued", "console": [["stdout", "who? "]], "seq": 1,
                     "runId": run_id}
    assert second["status"] == "waiting-input" and second["seq"] == 2
    await ws.send_json({"input": "kraken"})
    got = await stream.next()
    assert isinstance(got, StreamControl) and got.body == {"type": "input", "text": "kraken"}
    await ws.send_str("a raw line")
    got = await stream.next()
    assert isinstance(got, StreamControl) and got.body["text"] == "a raw line"
    await stream.send_event(3, {"status": "finished", "console": [], "exitCode": 0})
    assert (await _frame(ws))["status"] == "finished"
    await _closed(ws, 1000)


async def test_execute_batch_first_frame_as_the_official_client_sends(
        harness: Harness) -> None:
    h = harness
    fake = await _running(h)
    ws = await _ws(h, "/stream/kernel/sess-1/execute")
    opts = {"clean": None, "build": "make", "buildLog": False, "exec": "./a.out"}
    await ws.send_json({"code": "", "mode": "batch", "options": opts})
    stream = await fake.next_stream()
    assert stream.start.params["mode"] == "batch" and stream.start.params["options"] == opts
    await ws.close()


async def test_execute_bad_first_frame_is_an_error_frame(harness: Harness) -> None:
    h = harness
    fake = await _running(h)
    for first in ('{"code": 1}', '{"code": "x", "mode": "continue"}', "[]", "nope"):
        ws = await _ws(h, "/stream/kernel/sess-1/execute")
        await ws.send_str(first)
        frame = await _frame(ws)
        assert frame["type"] == "error", first
        await _closed(ws)
    assert fake.stream_started.empty()  # nothing was started on the agent


async def test_execute_resume_by_run_id_and_after(harness: Harness) -> None:
    h = harness
    fake = await _running(h)
    ws = await _ws(h, "/stream/kernel/sess-1/execute?runId=r-123&after=4")
    stream = await fake.next_stream()
    assert stream.start.params == {"run_id": "r-123", "after_seq": 4}
    await stream.send_event(5, {"status": "continued", "console": [["stdout", "5\n"]]})
    await stream.send_event(6, {"status": "finished", "console": [], "exitCode": 0})
    assert [(f["seq"], f["runId"]) for f in (await _frame(ws), await _frame(ws))] == \
        [(5, "r-123"), (6, "r-123")]
    await _closed(ws)
    # the agent does not know the run: refused before the upgrade
    fake.refuse_stream = ErrorReply(error_type="service-not-found", detail="no run r-9")
    status, body = await _refused(h, "/stream/kernel/sess-1/execute?runId=r-9&after=0")
    assert status == 404 and body["type"].endswith("service-not-found")


# ---- events --------------------------------------------------------------------------


async def test_events_history_then_another_replicas_events(harness: Harness) -> None:
    h = harness
    await _running(h)
    (row,) = await h.sessions()
    ws = await _ws(h, "/stream/kernel/sess-1/events")
    history = [await _frame(ws) for _ in range(4)]
    assert [(e["name"], e["status"]) for e in history] == [
        ("status", "PENDING"), ("status", "SCHEDULED"), ("status", "PREPARING"),
        ("status", "RUNNING")]

    async def publish(frm: str, to: str, reason: str) -> None:  # as another replica does
        event = {"event": "kernel-status", "kernelId": str(row.id), "sessionName": "sess-1",
                 "accessKey": h.access_key, "from": frm, "to": to, "reason": reason,
                 "at": "2999-01-01T00:00:00+00:00"}
        await h.app[EVENTS].client.publish(EVENTS_CHANNEL, orjson.dumps(event))

    await publish("RUNNING", "RESTARTING", "user-requested")
    await publish("RESTARTING", "RUNNING", "restarted")
    await publish("RUNNING", "TERMINATED", "out-of-memory")
    got = [await _frame(ws) for _ in range(5)]
    assert [(e["name"], e.get("status"), e["reason"]) for e in got] == [
        ("status", "RESTARTING", "user-requested"), ("status", "RUNNING", "restarted"),
        ("restarted", None, "restarted"), ("status", "TERMINATED", "out-of-memory"),
        ("terminated", None, "out-of-memory")]
    await _closed(ws, 1000)


async def test_a_session_ended_on_another_replica_closes_local_streams(
        harness: Harness) -> None:
    h = harness
    fake = await _running(h)
    (row,) = await h.sessions()
    ws = await _ws(h, "/stream/kernel/sess-1/pty")
    stream = await fake.next_stream()
    event = {"event": "kernel-status", "kernelId": str(row.id), "sessionName": "sess-1",
             "accessKey": h.access_key, "from": "RUNNING", "to": "ERROR",
             "reason": "agent-lost|owner:7", "at": "2999-01-01T00:00:00+00:00"}
    await h.app[EVENTS].client.publish(EVENTS_CHANNEL, orjson.dumps(event))
    assert await _frame(ws) == {"type": "error", "data": "the session is ERROR (agent-lost)"}
    await _closed(ws, 1000)
    assert isinstance(await stream.next(), StreamClose)


# ---- service proxies -----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["httpproxy", "tcpproxy"])
async def test_proxy_bytes_both_ways(harness: Harness, kind: str) -> None:
    h = harness
    fake = await _running(h)
    query = "app=jupyter" if kind == "httpproxy" else "service=ssh"
    ws = await _ws(h, f"/stream/kernel/sess-1/{kind}?{query}")
    stream = await fake.next_stream()
    assert stream.start.kind == "proxy"
    assert stream.start.params == {
        "service": "jupyter" if kind == "httpproxy" else "ssh",
        "protocol": "http" if kind == "httpproxy" else "tcp"}
    await ws.send_bytes(b"GET / HTTP/1.1\r\n\r\n")
    got = await stream.next()
    assert isinstance(got, StreamData) and got.data == b"GET / HTTP/1.1\r\n\r\n"
    await stream.send_data(b"HTTP/1.1 200 OK\r\n\r\n\x00\xff")
    msg = await ws.receive(10)
    assert msg.type == WSMsgType.BINARY and msg.data == b"HTTP/1.1 200 OK\r\n\r\n\x00\xff"
    await stream.close("")  # the service closed its connection
    await _closed(ws, 1000)


async def test_proxy_unknown_service_is_404(harness: Harness) -> None:
    h = harness
    fake = await _running(h)
    fake.refuse_stream = ErrorReply(error_type="service-not-found", detail="no service x")
    status, body = await _refused(h, "/stream/kernel/sess-1/httpproxy?service=x")
    assert status == 404 and body["type"].endswith("service-not-found"), body


# ---- refusals before the upgrade -----------------------------------------------------


async def test_refusals_before_upgrade(harness: Harness) -> None:
    h = harness
    await _running(h)
    other = await h.keypair()
    status, body = await _refused(h, "/stream/kernel/sess-1/pty", other)
    assert status == 404 and body["type"].endswith("kernel-not-found")
    for path in ("/stream/kernel/sess-1/pty?service=../x", "/stream/kernel/sess-1/pty?rows=0",
                 "/stream/kernel/sess-1/httpproxy", "/stream/kernel/sess-1/execute?after=1",
                 "/stream/kernel/sess-1/execute?runId=r&after=-1",
                 "/stream/kernel/sess-1/execute?runId=r&after=" + "9" * 40):
        status, body = await _refused(h, path)
        assert status == 400 and body["type"].endswith("invalid-api-params"), (path, body)
    status, body = await _refused(h, "/stream/kernel/sess-1/pty", headers={})
    assert status == 401 and body["type"].endswith("unauthorized")
    (row,) = await h.sessions()
    assert (await h.call("DELETE", "/kernel/sess-1"))[0] == 200
    for kind in ("pty", "execute", "events", "tcpproxy?service=ssh"):
        status, body = await _refused(h, f"/stream/kernel/{row.id}/{kind}")
        assert status == 409 and body["type"].endswith("kernel-not-running"), (kind, body)
    with pytest.raises(WSServerHandshakeError) as e:
        await _ws(h, "/stream/kernel/sess-1/pty")
    assert e.value.status == 404  # by name, a finished session is gone


async def _console_login(h: Harness) -> str:
    resp = await h.client.post("/console/login",
                               json={"access_key": h.access_key, "secret_key": h.secret_key})
    assert resp.status == 200
    return str((await resp.json())["csrf_token"])


async def test_browser_cookie_needs_csrf_and_same_origin(harness: Harness) -> None:
    h = harness
    fake = await _running(h)
    csrf = await _console_login(h)  # the cookie stays in the client's jar
    origin = f"http://{h.client.host}:{h.client.port}"
    path = f"/stream/kernel/sess-1/pty?csrf={csrf}"
    status, body = await _refused(h, path, headers={"Origin": "http://evil.example"})
    assert status == 403 and body["type"].endswith("forbidden")
    status, _ = await _refused(h, path, headers={})  # no Origin: not a browser page
    assert status == 403
    status, body = await _refused(h, "/stream/kernel/sess-1/pty",
                                  headers={"Origin": origin})
    assert status == 401 and "CSRF" in body["detail"]
    status, _ = await _refused(h, path + "x", headers={"Origin": origin})
    assert status == 401
    assert fake.stream_started.empty()
    ws = await h.client.ws_connect(path, headers={"Origin": origin})
    stream = await fake.next_stream()
    await stream.send_data(b"$ ")
    assert await _frame(ws) == {"type": "out", "data": base64.b64encode(b"$ ").decode()}
    await ws.close()


# ---- hostile agents, disconnects, session ends ----------------------------------------


async def test_an_agent_cannot_inject_into_another_agents_stream(harness: Harness) -> None:
    h = harness
    fake = await _running(h)
    hostile = await h.agent("agent-2")
    ws = await _ws(h, "/stream/kernel/sess-1/pty")
    stream = await fake.next_stream()
    await hostile.link.send(StreamData(stream_id=stream.stream_id, data=b"rm -rf /\r"))
    await hostile.link.send(StreamClose(stream_id=stream.stream_id, reason="hijacked"))
    await stream.send_data(b"genuine")
    frame = await _frame(ws)
    assert base64.b64decode(frame["data"]) == b"genuine"  # and nothing before it
    await stream.send_data(b"still open")
    assert base64.b64decode((await _frame(ws))["data"]) == b"still open"
    await ws.close()


async def test_an_agent_past_its_credit_window_is_cut_off(harness: Harness) -> None:
    h = harness
    fake = await _running(h)
    ws = await _ws(h, "/stream/kernel/sess-1/tcpproxy?service=ssh")
    stream = await fake.next_stream()
    await fake.link.send(StreamData(stream_id=stream.stream_id, data=b"x" * (WINDOW_BYTES + 1)))
    await _closed(ws, 1011)  # nothing of it was relayed to the client
    assert isinstance(await stream.next(), StreamClose)


async def test_a_malformed_event_from_the_agent_ends_the_stream(harness: Harness) -> None:
    h = harness
    fake = await _running(h)
    ws = await _ws(h, "/stream/kernel/sess-1/execute?runId=r-1&after=0")
    stream = await fake.next_stream()
    await fake.link.send(StreamEvent(stream_id=stream.stream_id, seq=1,
                                     body=["not", "an", "object"]))  # type: ignore[arg-type]
    frame = await _frame(ws)
    assert frame == {"type": "error", "data": "the agent sent a malformed stream-event"}
    await _closed(ws, 1000)


async def test_agent_connection_lost_closes_the_stream_with_a_reason(
        harness: Harness) -> None:
    h = harness
    fake = await _running(h)
    ws = await _ws(h, "/stream/kernel/sess-1/pty")
    await fake.next_stream()
    # the agent process restarts: a new connection joins under the same agent id
    again = h.fake_agent()
    again.kernels = fake.kernels
    await fake.close()
    await again.start()
    frame = await _frame(ws)
    assert frame["type"] == "error" and "connection" in frame["data"], frame
    await _closed(ws)
    assert len(h.app[STREAMS]) == 0


async def test_session_destroy_closes_its_streams(harness: Harness) -> None:
    h = harness
    fake = await _running(h)
    pty = await _ws(h, "/stream/kernel/sess-1/pty")
    pty_stream = await fake.next_stream()
    ex = await _ws(h, "/stream/kernel/sess-1/execute")
    await ex.send_json({"code": "import time; time.sleep(100)", "mode": "query"})
    ex_stream = await fake.next_stream()
    assert (await h.call("DELETE", "/kernel/sess-1"))[0] == 200
    for ws in (pty, ex):
        frame = await _frame(ws)
        assert frame["type"] == "error" and "TERMINATING" in frame["data"], frame
        assert "user-requested" in frame["data"] and "owner" not in frame["data"]
        await _closed(ws, 1000)
    for stream in (pty_stream, ex_stream):
        assert isinstance(await stream.next(), StreamClose)
    assert len(h.app[STREAMS]) == 0


# ---- flow control and rate limits -----------------------------------------------------


def _kernel_buffers() -> int:
    """The most the kernel may buffer on one loopback TCP connection (both ends)."""
    def most(name: str) -> int:
        return int(Path(f"/proc/sys/net/ipv4/{name}").read_text().split()[2])
    return most("tcp_wmem") + most("tcp_rmem")


async def test_a_client_that_does_not_read_holds_the_agent_back(harness: Harness) -> None:
    h = harness
    fake = await _running(h)
    ws = await _ws(h, "/stream/kernel/sess-1/tcpproxy?service=feed")
    stream = await fake.next_stream()
    chunk = bytes(range(256)) * 256  # 64 KiB
    total = 64 * 2**20
    assert total > WINDOW_BYTES + _kernel_buffers() + 4 * 2**20

    async def flood() -> None:
        for _ in range(total // len(chunk)):
            await stream.send_data(chunk)

    sender = asyncio.ensure_future(flood())
    await asyncio.wait_for(stream.blocked.wait(), 30)
    # held back: the manager credited only what it passed on to the socket
    allowed = stream.sent_bytes
    assert allowed <= WINDOW_BYTES + _kernel_buffers() + 4 * 2**20, allowed
    assert not sender.done()
    received = 0
    while received < total:  # now read: everything arrives, in order
        msg = await ws.receive(30)
        assert msg.type == WSMsgType.BINARY and msg.data == chunk
        received += len(msg.data)
    await asyncio.wait_for(sender, 30)
    assert received == total
    await ws.close()


async def test_a_client_faster_than_the_agent_is_paused(
        harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    h = harness
    # a paused socket is not read, so a vanished client shows by its missing pongs
    monkeypatch.setattr(stream_ws, "HEARTBEAT", 3.0)
    fake = await _running(h)
    fake.auto_credit = False  # the agent passes nothing on: no credit comes back
    ws = await _ws(h, "/stream/kernel/sess-1/tcpproxy?service=sink",
                   timeout=ClientWSTimeout(ws_close=0.2))
    stream = await fake.next_stream()
    chunk = b"x" * 65536
    sent = 0

    async def upload() -> None:
        nonlocal sent
        while True:
            await ws.send_bytes(chunk)
            sent += len(chunk)

    uploader = asyncio.ensure_future(upload())
    got = 0
    while got < WINDOW_BYTES:
        msg = await stream.next()
        assert isinstance(msg, StreamData)
        got += len(msg.data)
    assert got == WINDOW_BYTES
    with pytest.raises(TimeoutError):  # nothing beyond the window without credit
        await stream.next(timeout=0.5)
    await fake.link.send(StreamCredit(stream_id=stream.stream_id, amount=65536))
    msg = await stream.next()
    assert isinstance(msg, StreamData) and len(msg.data) == 65536
    uploader.cancel()
    await ws.close()  # while the manager waits for credit, not reading the socket
    while not isinstance(msg, StreamClose):  # it notices the client left all the same
        msg = await stream.next(timeout=20)


async def test_frames_count_against_the_rate_limit_but_stdin_does_not(
        harness: Harness) -> None:
    h = harness
    await h.agent()
    keys = await h.keypair()
    async with h.engine.begin() as conn:
        await conn.execute(sa.insert(keypair_policies).values(access_key=keys[0],
                                                              rate_limit=10))
    assert (await h.create("limited", keys=keys))[0] == 201  # 1 request
    fake = h.agents[0]
    ws = await _ws(h, "/stream/kernel/limited/pty", keys)  # 2: the handshake
    stream = await fake.next_stream()
    for _ in range(30):
        await ws.send_str('{"type": "stdin", "chars": "YQ=="}')
    for _ in range(30):
        await ws.send_str('{"type": "ping"}')
    relayed = []
    while True:
        msg = await stream.next()
        if isinstance(msg, StreamClose):
            break
        relayed.append(type(msg).__name__)
    assert relayed.count("StreamData") == 30
    assert relayed.count("StreamControl") == 8  # 10 - create - handshake
    frame = await _frame(ws)
    assert frame["type"] == "error" and "more than 10 requests" in frame["data"]
    await _closed(ws, 1008)
