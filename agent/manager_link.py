"""One connection to one manager replica: join, heartbeats, and incoming requests.

``ManagerSession`` dials out over a ``DealerLink`` (CurveZMQ), sends ``Join`` with the
join token, then a ``Heartbeat`` every ``heartbeat_interval``. A ``Rejoin`` (the
manager restarted), an ``unauthorized`` error or a Join that times out starts the
join again, with exponential backoff (0.5 s up to 5 s; up to 30 s while the manager
answers ``agent-id-conflict``: another live agent holds our id, or our previous
process has not been silent long enough yet, which the first retries outlast). Sends
never wait for a replica that is down or hung (``DealerLink(fail_fast=True)``): a Join
to it fails at once and is retried, and each replica's heartbeats go out independently
of the others.

Streams (agent link v2) belong to the session that started them: the session passes
itself to ``dispatch``, their messages go back with ``send_stream``, and when the
connection drops, or the session joins again, the agent is told (``connection_lost``).
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from typing import Any, Protocol

import zmq

from common.codec import Message
from common.errors import KrakenError, ServiceUnavailable
from common.link import DealerLink
from common.msg_agent import (
    AGENT_PROTOCOL,
    ErrorReply,
    Heartbeat,
    Join,
    JoinAccepted,
    Rejoin,
)

log = logging.getLogger(__name__)

BACKOFF_START = 0.5
BACKOFF_MAX = 5.0
BACKOFF_CONFLICT_MAX = 30.0  # while another live agent holds our agent id
STREAM_SEND_PATIENCE = 5.0  # seconds a stream message waits for a full send queue
STREAM_SEND_RETRY = 0.01


class AgentSide(Protocol):
    """What a manager session needs from the agent."""

    def join_message(self) -> Join: ...
    async def heartbeat_message(self) -> tuple[Heartbeat, list[dict[str, Any]]]: ...
    async def on_join_accepted(self, accepted: JoinAccepted, reported: list[str]) -> None: ...
    async def dispatch(self, msg: Message, session: ManagerSession) -> Message | None: ...
    def connection_lost(self, session: ManagerSession) -> None: ...


class ManagerSession:
    """The agent's link to one manager endpoint."""

    def __init__(self, agent: AgentSide, endpoint: str, server_key: bytes | None,
                 request_timeout: float, link_timeout: float = 0.0) -> None:
        self.endpoint = endpoint
        self._agent = agent
        self._timeout = request_timeout
        self.link = DealerLink(AGENT_PROTOCOL, endpoint, self._on_message,
                               server_public_key=server_key, fail_fast=True,
                               heartbeat_timeout=link_timeout,
                               on_disconnect=self._lost)
        self._rejoin = asyncio.Event()
        self.joined = asyncio.Event()
        self.connected = False  # joined, and the connection has not dropped since
        self._sent_images: list[dict[str, Any]] | None = None
        self._conflict = False  # the last join was refused: our agent id is taken
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.link.start()
        self._task = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.link.close()
        self._lost()

    def _lost(self) -> None:
        self.connected = False
        self._agent.connection_lost(self)

    async def send_stream(self, msg: Message) -> bool:
        """A message of a stream: it waits (a little) for a full send queue, never for a
        replica that is gone; False if it could not be sent (the stream is then over)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STREAM_SEND_PATIENCE
        while self.connected:
            try:
                await self.link.send(msg)
                return True
            except ServiceUnavailable:  # not connected, or its queue is full
                if loop.time() >= deadline:
                    break
                await asyncio.sleep(STREAM_SEND_RETRY)
            except (zmq.ZMQError, KrakenError) as e:
                log.warning("could not send %s to %s: %s", msg.msg_type, self.endpoint, e)
                break
        return False

    async def send_event(self, msg: Message) -> bool:
        """One-way message, never waiting: a replica that is down or hung misses it (it
        learns the state from the next heartbeat or join); the others are not held up."""
        try:
            await self.link.send(msg)
        except (zmq.ZMQError, KrakenError) as e:  # not connected, or a closing socket
            log.log(logging.DEBUG if isinstance(msg, Heartbeat) else logging.WARNING,
                    "could not send %s to %s: %s", msg.msg_type, self.endpoint, e)
            return False
        return True

    async def _run(self) -> None:
        backoff = BACKOFF_START
        while True:
            accepted, reported = await self._join()
            if accepted is None:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2,
                              BACKOFF_CONFLICT_MAX if self._conflict else BACKOFF_MAX)
                continue
            backoff = BACKOFF_START
            self.joined.set()
            self.connected = True
            try:
                await self._agent.on_join_accepted(accepted, reported)
            except Exception:
                log.exception("reconciling after join with %s failed", self.endpoint)
            await self._heartbeat_until_rejoin(accepted.heartbeat_interval)
            self.joined.clear()
            self._lost()  # the streams of this connection end with it

    async def _join(self) -> tuple[JoinAccepted | None, list[str]]:
        join = self._agent.join_message()
        reported = join.kernels + join.creating
        self._rejoin.clear()
        self._conflict = False
        try:
            reply = await self.link.request(join, self._timeout)
        except KrakenError as e:
            log.warning("join to %s failed: %s", self.endpoint, e)
            return None, reported
        if isinstance(reply, JoinAccepted):
            self._sent_images = join.images
            log.info("joined manager at %s", self.endpoint)
            return reply, reported
        detail = reply.detail if isinstance(reply, ErrorReply) else reply.msg_type
        if isinstance(reply, ErrorReply) and reply.error_type == "agent-id-conflict":
            # another live agent holds our agent_id: say so loudly; keep retrying, since
            # this is also what a quick restart sees until the old process is known dead
            log.error("manager at %s refused the join, agent id %r is taken: %s "
                      "(retrying)", self.endpoint, join.agent_id, detail)
            self._conflict = True
            return None, reported
        log.warning("manager at %s refused the join: %s", self.endpoint, detail)
        return None, reported

    async def _heartbeat_until_rejoin(self, interval: float) -> None:
        while not self._rejoin.is_set():
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a
            # cancellation that lands as the awaited thing completes, and close() hangs
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(interval, 0.05)):
                    await self._rejoin.wait()
                return
            beat, images = await self._agent.heartbeat_message()
            if images != self._sent_images:
                beat = dataclasses.replace(beat, images=images)
            if await self.send_event(beat):
                self._sent_images = images

    async def _on_message(self, msg: Message) -> Message | None:
        if isinstance(msg, Rejoin):
            log.info("manager at %s asks to join again", self.endpoint)
            self._rejoin.set()
            return None
        if isinstance(msg, ErrorReply):
            if msg.error_type == "unauthorized":
                self._rejoin.set()
            return None
        if isinstance(msg, JoinAccepted):
            return None  # a late reply to a join that already timed out
        return await self._agent.dispatch(msg, self)

