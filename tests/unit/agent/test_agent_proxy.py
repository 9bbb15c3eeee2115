"""The "proxy" stream kind: a fake sink on one side, real TCP servers (and a real runner
starting them) on the other."""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import zmq
import zmq.asyncio

from agent import proxy
from agent.proxy import ProxyHandler, open_service, start_proxy
from agent.runner_client import RunnerClient
from common.errors import InvalidAPIParameters, ServiceNotFound, ServiceStartFailed
from common.services import LABEL_SERVICE_PORTS, ServicePort
from common.streams import PROXY_READ_BYTES

REPO = Path(__file__).resolve().parents[3]
ECHO = """
import asyncio, os, sys
open("starts.log", "a").write(f"{os.getpid()}\\n")
async def echo(reader, writer):
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()
async def main():
    server = await asyncio.start_server(echo, sys.argv[1], int(sys.argv[2]))
    async with server:
        await server.serve_forever()
asyncio.run(main())
"""


class FakeSink:
    """The manager's side of a stream: records data, and gives credit only when told."""

    def __init__(self, credit: bool = True) -> None:
        self.data = bytearray()
        self.sends = 0  # send_data calls that returned (each one spent credit)
        self.credit = asyncio.Event()
        if credit:
            self.credit.set()
        self.closed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._grew = asyncio.Event()

    async def send_data(self, data: bytes) -> None:
        assert not self.closed.done(), "data after close"
        assert len(data) <= PROXY_READ_BYTES
        await self.credit.wait()
        self.data += data
        self.sends += 1
        self._grew.set()

    async def close(self, reason: str) -> None:
        assert not self.closed.done(), "closed twice"
        self.closed.set_result(reason)

    async def received(self, size: int) -> bytes:
        while len(self.data) < size:
            self._grew.clear()
            await asyncio.wait_for(self._grew.wait(), 10)
        return bytes(self.data)


@dataclass
class LocalServer:
    """A TCP server on 127.0.0.1 whose connections the test drives by hand."""

    conns: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = field(
        default_factory=asyncio.Queue)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    server: asyncio.Server | None = None

    async def accept(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.wait_for(self.conns.get(), 10)

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])


@pytest.fixture
async def local() -> AsyncIterator[LocalServer]:
    srv = LocalServer()

    async def on_conn(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        srv.writers.append(w)
        await srv.conns.put((r, w))

    srv.server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
    yield srv
    srv.server.close()
    for w in srv.writers:
        w.close()
        with contextlib.suppress(OSError):
            await w.wait_closed()
    await srv.server.wait_closed()


async def relay_to(srv: LocalServer, sink: FakeSink) -> tuple[
        ProxyHandler, asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port,
                                                   limit=PROXY_READ_BYTES)
    handler = ProxyHandler(reader, writer, sink)
    service_r, service_w = await srv.accept()
    return handler, service_r, service_w


def no_tasks_left(besides: set[asyncio.Task[object]] | None = None) -> bool:
    """Only the test (and the tasks ``besides``, e.g. a runner client's) runs: the relay
    left no task behind."""
    return asyncio.all_tasks() <= {asyncio.current_task(), *(besides or set())}


async def test_bytes_both_ways_and_the_service_closing_ends_the_stream(
        local: LocalServer) -> None:
    sink = FakeSink()
    handler, service_r, service_w = await relay_to(local, sink)
    await handler.on_data(b"GET / HTTP/1.1\r\n\r\n")
    assert await service_r.readexactly(18) == b"GET / HTTP/1.1\r\n\r\n"
    payload = os.urandom(3 * PROXY_READ_BYTES + 5)
    service_w.write(payload)
    await service_w.drain()
    assert await sink.received(len(payload)) == payload
    service_w.close()
    assert await asyncio.wait_for(sink.closed, 10) == "the service closed the connection"
    assert handler.closed and no_tasks_left()
    await handler.on_data(b"late")  # a frame already in flight: dropped, no error
    await handler.on_close("the client left")  # the stream table's close after ours
    assert no_tasks_left()


async def test_the_client_closing_closes_the_socket(local: LocalServer) -> None:
    sink = FakeSink()
    handler, service_r, _service_w = await relay_to(local, sink)
    await handler.on_data(b"bye")
    await handler.on_close("the WebSocket was closed")
    assert await asyncio.wait_for(service_r.read(), 10) == b"bye"  # then end of file
    assert handler.closed and no_tasks_left()
    assert not sink.closed.done()  # the client's own close needs no stream-close back


async def test_out_of_credit_the_relay_stops_reading_the_socket(local: LocalServer) -> None:
    sink = FakeSink(credit=False)
    handler, _service_r, service_w = await relay_to(local, sink)
    flood = os.urandom(32 << 20)
    service_w.write(flood)
    pushed = asyncio.ensure_future(service_w.drain())
    # Give a relay that ignored credit every chance to swallow the flood into memory.
    for _ in range(50):
        await asyncio.sleep(0.01)
    assert not pushed.done(), "the service could push 32 MiB into a stream with no credit"
    assert sink.sends == 0 and len(sink.data) == 0
    sink.credit.set()
    assert await sink.received(len(flood)) == flood
    await asyncio.wait_for(pushed, 10)
    await handler.on_close("done")
    assert no_tasks_left()


async def test_client_bytes_are_credited_only_once_the_service_took_them(
        local: LocalServer) -> None:
    sink = FakeSink()
    handler, service_r, _service_w = await relay_to(local, sink)
    upload = os.urandom(32 << 20)
    sent = asyncio.ensure_future(handler.on_data(upload))
    for _ in range(50):  # the service reads nothing yet: on_data must not return
        await asyncio.sleep(0.01)
    assert not sent.done(), "on_data returned (credit would go back) before the service read"
    assert await service_r.readexactly(len(upload)) == upload
    await asyncio.wait_for(sent, 10)
    await handler.on_close("done")
    assert no_tasks_left()


async def test_a_service_reset_ends_the_stream_with_a_reason(local: LocalServer) -> None:
    sink = FakeSink()
    handler, _service_r, service_w = await relay_to(local, sink)
    service_w.transport.abort()  # RST
    reason = await asyncio.wait_for(sink.closed, 10)
    assert reason in ("the service closed the connection",) or "failed" in reason
    assert handler.closed and no_tasks_left()


# ---- the starter, against a real runner that starts a real service ------------------


def private_loopback() -> str:
    """A loopback address of its own, so the runner's fixed ports 2000-2002 are free."""
    return f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"


@dataclass
class FakeKernel:
    """What the starter uses of ``agent.kernels.Kernel``."""

    runner: RunnerClient
    labels: dict[str, str]
    touched: int = 0

    def touch(self) -> None:
        self.touched += 1


@dataclass
class Session:
    kernel: FakeKernel
    workdir: Path
    tasks: set[asyncio.Task[object]]  # the runner client's own
    start: Callable[[dict[str, str], FakeSink], Awaitable[tuple[ProxyHandler, dict[str, object]]]]


@pytest.fixture
async def session(tmp_path: Path) -> AsyncIterator[Session]:
    host = private_loopback()
    defs, work = tmp_path / "services", tmp_path / "work"
    defs.mkdir()
    work.mkdir()
    (defs / "echo.json").write_text(json.dumps({"argv": [sys.executable, "-c", ECHO, host,
                                                         "8090"]}))
    (defs / "crash.json").write_text(json.dumps({"argv": [sys.executable, "-c",
                                                          "raise SystemExit(3)"]}))
    env = dict(os.environ, KRAKEN_RUNNER_HOST=host, KRAKEN_RUNNER_WORKDIR=str(work),
               KRAKEN_RUNNER_SERVICES_DIR=str(defs), PYTHONPATH=str(REPO))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kernels.runner", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    zctx = zmq.asyncio.Context()
    client = RunnerClient(zctx, host, lambda m: None)
    labels = {LABEL_SERVICE_PORTS: "echo:tcp:8090,crash:http:8091,ghost:http:8092"}
    kernel = FakeKernel(client, labels)
    try:
        await client.wait_ready(20)
        yield Session(kernel, work, asyncio.all_tasks() - {asyncio.current_task()},
                      lambda params, sink: start_proxy(kernel, params, sink))  # type: ignore[arg-type]
    finally:
        await client.close()
        zctx.term()
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)


async def test_the_first_connection_starts_the_service_and_later_ones_reuse_it(
        session: Session) -> None:
    sinks = [FakeSink(), FakeSink()]
    first, info = await session.start({"service": "echo", "protocol": "http"}, sinks[0])
    assert info == {"service": "echo", "protocol": "tcp", "port": 8090}
    second, _ = await session.start({"service": "echo"}, sinks[1])
    await first.on_data(b"one")
    await second.on_data(b"two")
    assert await sinks[0].received(3) == b"one"
    assert await sinks[1].received(3) == b"two"
    assert len((session.workdir / "starts.log").read_text().split()) == 1  # started once
    assert session.kernel.touched >= 4  # opening and using a proxy counts as activity
    for handler in (first, second):
        await handler.on_close("done")
    assert no_tasks_left(session.tasks)


async def test_unknown_services_and_bad_params_are_refused(session: Session) -> None:
    with pytest.raises(ServiceNotFound):
        await session.start({"service": "vscode"}, FakeSink())
    with pytest.raises(InvalidAPIParameters):
        await session.start({"service": "echo", "protocol": "udp"}, FakeSink())
    with pytest.raises(InvalidAPIParameters):
        await session.start({}, FakeSink())


async def test_a_service_that_cannot_start_fails_fast_with_why(session: Session) -> None:
    with pytest.raises(ServiceStartFailed) as err:
        await session.start({"service": "ghost"}, FakeSink())
    assert "no definition" in str(err.value)
    with pytest.raises(ServiceStartFailed) as err:  # well before SERVICE_START_TIMEOUT
        await session.start({"service": "crash"}, FakeSink())
    assert "exited (status 3) before it accepted connections" in str(err.value)
    assert no_tasks_left(session.tasks)


async def test_a_port_nobody_opens_times_out(session: Session,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(proxy, "PROBE_INTERVAL", 60.0)  # the runner would say it runs
    with pytest.raises(ServiceStartFailed) as err:
        await open_service(session.kernel.runner, ServicePort("echo", "tcp", 8099), 1.0)
    assert "did not accept connections on port 8099 within 1s" in str(err.value)
