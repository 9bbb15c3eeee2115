"""The python image's Jupyter service, reached through the agent's "proxy" stream kind.

A local TCP listener stands in for the manager and the client's ``backend.ai app``: each
connection gets a stream (``start_proxy``) whose sink writes back to the connection.
The session publishes no port: the only way in is the agent's relay.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from agent.docker_backend import DockerBackend
from agent.proxy import ProxyHandler, start_proxy
from agent.server import Agent
from common.errors import ServiceNotFound
from common.msg_agent import KernelCreated
from common.services import service_ports
from tests.integration.agent.harness import IMAGE, AgentHarness, FakeManager
from tests.jupyter import visit_jupyter

pytestmark = pytest.mark.integration


class WriterSink:
    """A stream sink that writes straight to a local TCP client (no credit to wait for)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.reason: str | None = None

    async def send_data(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def close(self, reason: str) -> None:
        self.reason = reason
        self.writer.close()


class LocalProxy:
    """127.0.0.1:<port> → the agent's relay to a service of one kernel."""

    def __init__(self, agent: Agent, kernel_id: str, service: str) -> None:
        self.agent, self.kernel_id, self.service = agent, kernel_id, service
        self.handlers: list[ProxyHandler] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        kernel = self.agent.kernels.get(self.kernel_id)
        try:
            handler, _info = await start_proxy(kernel, {"service": self.service,
                                                        "protocol": "http"}, WriterSink(writer))
        except BaseException:
            writer.close()
            raise
        self.handlers.append(handler)
        try:
            while data := await reader.read(65536):
                await handler.on_data(data)
        except OSError:
            pass
        finally:
            await handler.on_close("the local client left")
            writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def require_jupyter_image() -> None:
    if "jupyter" not in [s.name for s in service_ports(await harness_image_labels())]:
        pytest.skip(f"{IMAGE} offers no jupyter service: rebuild it "
                    "(python -m kernels.build python)")


@pytest.fixture
async def jupyter_session(manager: FakeManager,
                          harness: AgentHarness) -> AsyncIterator[tuple[Agent, str]]:
    await require_jupyter_image()
    agent = await harness.start()
    await manager.next_join()
    made = await manager.call(harness.create_msg())
    assert isinstance(made, KernelCreated), made
    yield agent, made.kernel_id


async def harness_image_labels() -> dict[str, str]:
    backend = DockerBackend()
    try:
        return await backend.image_labels(IMAGE)
    finally:
        await backend.close()


async def raw_http(agent: Agent, kernel_id: str, request: bytes) -> tuple[bytes, str | None]:
    """One HTTP/1.1 exchange over a proxy stream; the service closes after its answer."""
    got = bytearray()
    done: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    class Sink:
        async def send_data(self, data: bytes) -> None:
            got.extend(data)

        async def close(self, reason: str) -> None:
            done.set_result(reason)

    handler, info = await start_proxy(agent.kernels.get(kernel_id),
                                      {"service": "jupyter", "protocol": "http"}, Sink())
    assert info == {"service": "jupyter", "protocol": "http", "port": 8090}
    await handler.on_data(request)
    reason = await asyncio.wait_for(done, 60)
    return bytes(got), reason


async def test_jupyter_answers_through_the_agent_relay(
        jupyter_session: tuple[Agent, str]) -> None:
    agent, kid = jupyter_session
    answer, reason = await raw_http(agent, kid, b"GET /api HTTP/1.1\r\nHost: 127.0.0.1:8090\r\n"
                                                b"Connection: close\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b'"version"' in body
    assert reason == "the service closed the connection"
    # a Host that is not a loopback name (DNS rebinding through the local proxy) is refused
    answer, _ = await raw_http(agent, kid, b"GET /tree HTTP/1.1\r\nHost: evil.example:8090\r\n"
                                           b"Connection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 403"), answer[:80]
    with pytest.raises(ServiceNotFound):
        await start_proxy(agent.kernels.get(kid), {"service": "vscode"}, None)  # type: ignore[arg-type]


async def test_a_jupyter_kernel_runs_code_through_the_relay(
        jupyter_session: tuple[Agent, str]) -> None:
    agent, kid = jupyter_session
    proxy = LocalProxy(agent, kid, "jupyter")
    base = await proxy.start()
    try:
        visit = await visit_jupyter(base)
    finally:
        await proxy.close()
        for handler in proxy.handlers:
            with contextlib.suppress(Exception):
                await handler.on_close("test over")
    assert visit.tree_status == 200
    assert visit.api_version.startswith("6.")
    assert visit.result == "42"
    assert all(h.closed for h in proxy.handlers)


async def test_a_restarted_agent_reaches_the_running_service(
        manager: FakeManager, harness: AgentHarness) -> None:
    """The service's port comes from the container's labels after a recovery, and the
    Jupyter the runner started before the restart is used, not started twice."""
    await require_jupyter_image()
    first = await harness.start()
    await manager.next_join()
    made = await manager.call(harness.create_msg())
    assert isinstance(made, KernelCreated), made
    request = b"GET /api HTTP/1.1\r\nHost: localhost:8090\r\nConnection: close\r\n\r\n"
    before, _ = await raw_http(first, made.kernel_id, request)
    assert before.startswith(b"HTTP/1.1 200")
    await harness.stop(first)
    second = await harness.start()
    join = await manager.next_join()
    assert join.kernels == [made.kernel_id]
    status = await second.kernels.get(made.kernel_id).runner.start_service("jupyter", probe=True)
    assert status.state == "running"  # the runner kept it across the agent's restart
    after, _ = await raw_http(second, made.kernel_id, request)
    assert after.startswith(b"HTTP/1.1 200")
