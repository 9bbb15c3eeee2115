"""The "proxy" stream kind: raw bytes between a manager stream and a service in a session.

``stream-start`` params: ``{"service": name, "protocol": "http" | "tcp"}``. The service
and its port come from the image's ``ai.backend.service-ports`` label (``common.services``);
an unknown one is ``ServiceNotFound`` (404). The agent asks the runner to start the
service (a no-op while it runs), then connects to the container's address on the kernels
network, the address the runner's own ports are reached at: sessions publish no port on
the host. A service that does not accept a connection within ``SERVICE_START_TIMEOUT``,
or exits first, is ``ServiceStartFailed``.

Then bytes flow both ways. Client bytes (``on_data``) are written to the socket and
drained before ``on_data`` returns, so the client's credit comes back only once the
service took them. Service bytes are read ``PROXY_READ_BYTES`` at a time and handed to
``sink.send_data``, which waits for credit: while the client is out of credit the socket
is not read, and TCP pushes back on the service. End of file or an error on either side
ends both: the socket is closed and the stream closed with a reason.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from asyncio import StreamReader, StreamWriter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agent.streams import StreamSink
from common.errors import InvalidAPIParameters, ServiceStartFailed
from common.msg_runner import ServiceStatus
from common.services import SERVICE_PROTOCOLS, ServicePort, find_service
from common.streams import PROXY_READ_BYTES, SERVICE_START_TIMEOUT

if TYPE_CHECKING:
    from agent.kernels import Kernel
    from agent.runner_client import RunnerClient

log = logging.getLogger(__name__)

CONNECT_RETRY = 0.2  # seconds between connection attempts while a service starts
PROBE_INTERVAL = 1.0  # seconds between asking the runner whether the service still runs
CLOSE_GRACE = 2.0  # seconds a closing socket may take to flush before it is aborted
DETAIL_CHARS = 500  # of a runner's reason, passed on to the client


async def start_proxy(kernel: Kernel, params: dict[str, Any],
                      sink: StreamSink) -> tuple[ProxyHandler, dict[str, Any]]:
    """The "proxy" starter: find the service, start it if needed, connect, relay."""
    service = find_service(kernel.labels, params.get("service"))
    protocol = params.get("protocol", service.protocol)
    if protocol not in SERVICE_PROTOCOLS:
        raise InvalidAPIParameters(f"proxy protocol must be one of {SERVICE_PROTOCOLS}")
    reader, writer = await open_service(kernel.runner, service)
    kernel.touch()
    handler = ProxyHandler(reader, writer, sink, kernel.touch)
    return handler, {"service": service.name, "protocol": service.protocol,
                     "port": service.port}


def _failed(service: ServicePort, status: ServiceStatus) -> ServiceStartFailed | None:
    """The error a runner's answer means, or None if the service is (being) started."""
    if status.state in ("started", "running"):
        return None
    if status.state == "failed":  # the runner's words, bounded: it runs in the session
        return ServiceStartFailed(f"service {service.name!r} cannot start: "
                                  f"{str(status.detail)[:DETAIL_CHARS]}")
    return ServiceStartFailed(f"service {service.name!r} exited (status {status.last_exit}) "
                              "before it accepted connections")


async def open_service(runner: RunnerClient, service: ServicePort, timeout: float =
                       SERVICE_START_TIMEOUT) -> tuple[StreamReader, StreamWriter]:
    """Start ``service`` through the runner unless it runs, and connect to its port."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    error = _failed(service, await runner.start_service(service.name))
    next_probe = loop.time() + PROBE_INTERVAL
    while error is None:
        try:
            async with asyncio.timeout(max(deadline - loop.time(), CONNECT_RETRY)):
                return await asyncio.open_connection(runner.host, service.port,
                                                     limit=PROXY_READ_BYTES)
        except (OSError, TimeoutError) as e:
            last = e
        if loop.time() >= deadline:
            raise ServiceStartFailed(
                f"service {service.name!r} did not accept connections on port "
                f"{service.port} within {timeout:.0f}s ({type(last).__name__}: {last})")
        if loop.time() >= next_probe:
            error = _failed(service, await runner.start_service(service.name, probe=True))
            next_probe = loop.time() + PROBE_INTERVAL
        if error is None:
            await asyncio.sleep(CONNECT_RETRY)
    raise error


class ProxyHandler:
    """One proxied TCP connection (the ``StreamHandler`` of a "proxy" stream)."""

    def __init__(self, reader: StreamReader, writer: StreamWriter, sink: StreamSink,
                 on_activity: Callable[[], None] = lambda: None) -> None:
        self._reader = reader
        self._writer = writer
        self._sink = sink
        self._on_activity = on_activity
        self._closed = False
        self._pump = asyncio.ensure_future(self._pump_out())

    @property
    def closed(self) -> bool:
        return self._closed

    async def _pump_out(self) -> None:
        """Service → client, one read per credit-limited ``send_data``."""
        reason = "the service closed the connection"
        try:
            while data := await self._reader.read(PROXY_READ_BYTES):
                await self._sink.send_data(data)
        except OSError as e:
            reason = f"the service connection failed: {e}"
        except Exception as e:  # noqa: BLE001 — the stream is gone: end it, leak nothing
            log.warning("proxy relay to the client failed: %r", e)
            reason = f"relay failed: {type(e).__name__}"
        try:
            await self._finish(reason, tell_sink=True)
        except Exception as e:  # noqa: BLE001 — nobody awaits this task: say it here
            log.warning("proxy stream: closing failed: %r", e)

    async def on_data(self, data: bytes) -> None:
        """Client → service; returns once the socket took the bytes (then credit goes back)."""
        if self._closed:
            return
        self._on_activity()
        try:
            self._writer.write(data)
            await self._writer.drain()
        except OSError as e:
            await self._finish(f"the service connection failed: {e}", tell_sink=True)

    async def on_control(self, body: dict[str, Any]) -> None:
        log.debug("proxy stream: ignored a control message %r", sorted(body)[:5])

    async def on_resize(self, rows: int, cols: int) -> None:
        log.debug("proxy stream: ignored a resize")

    async def on_close(self, reason: str) -> None:
        """The client side ended (or its connection was lost): close the socket."""
        await self._finish(reason, tell_sink=False)

    async def _finish(self, reason: str, *, tell_sink: bool) -> None:
        if self._closed:
            return
        self._closed = True
        log.debug("proxy stream closing: %s", reason)
        if self._pump is not asyncio.current_task():
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        await self._close_socket()
        if tell_sink:
            await self._sink.close(reason)

    async def _close_socket(self) -> None:
        self._writer.close()
        try:
            async with asyncio.timeout(CLOSE_GRACE):
                await self._writer.wait_closed()
        except (OSError, TimeoutError):
            self._writer.transport.abort()
