"""Test harness for the agent against real Docker and real ZeroMQ + CurveZMQ.

``FakeManager`` is a RouterLink playing the manager's part; ``AgentHarness`` starts
in-process agents dialing to it and removes every container they labelled, even
when a test fails.
"""
from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiodocker
import pytest
import zmq

from agent.config import AgentConfig
from agent.docker_backend import DockerBackend
from agent.server import Agent
from common.codec import Message
from common.link import RouterLink
from common.msg_agent import (
    AGENT_PROTOCOL,
    CreateKernel,
    Heartbeat,
    Join,
    JoinAccepted,
    KernelTerminated,
    StreamClose,
    StreamCredit,
    StreamData,
    StreamEvent,
)
from common.streams import cost
from tests.scratch_mounts import unmount_scratch

IMAGE = "kraken/python:latest"
TOKEN = "test-join-token"


def require_docker_image(image: str = IMAGE) -> None:
    if shutil.which("docker") is None:
        pytest.skip("no docker CLI")
    probe = subprocess.run(["docker", "image", "inspect", image], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"image {image} is not built (python -m kernels.build python)")


class FakeManager:
    """The manager end of the agent link, recording what agents send."""

    def __init__(self) -> None:
        public, secret = zmq.curve_keypair()
        self.public_key = public.decode()
        self.link = RouterLink(AGENT_PROTOCOL, "tcp://127.0.0.1:*", self._handle,
                               curve_secret_key=secret, curve_public_key=public)
        self.joins: asyncio.Queue[Join] = asyncio.Queue()
        self.events: asyncio.Queue[KernelTerminated] = asyncio.Queue()
        self.heartbeats: list[Heartbeat] = []
        self.keep: list[str] | None = None  # None: keep whatever the agent reports
        self.drop: list[str] = []  # JoinAccepted.drop_kernels
        self.peer: bytes | None = None
        self.streams: dict[str, list[Message]] = defaultdict(list)  # what agents sent
        self._stream_changed = asyncio.Event()
        self.link.start()

    async def _handle(self, peer: bytes, msg: Message) -> Message | None:
        if isinstance(msg, Join):
            if msg.token != TOKEN:
                return None
            self.peer = peer
            self.joins.put_nowait(msg)
            keep = msg.kernels if self.keep is None else self.keep
            return JoinAccepted(heartbeat_interval=0.2, keep_kernels=list(keep),
                                drop_kernels=list(self.drop))
        if isinstance(msg, (StreamData, StreamEvent, StreamClose)):
            self.streams[msg.stream_id].append(msg)
            self._stream_changed.set()
            if not isinstance(msg, StreamClose):  # passed on at once: credit it back
                amount = cost(msg.data if isinstance(msg, StreamData) else msg.body)
                await self.link.send(peer, StreamCredit(stream_id=msg.stream_id,
                                                        amount=amount))
            return None
        if isinstance(msg, Heartbeat):
            self.heartbeats.append(msg)
        elif isinstance(msg, KernelTerminated):
            self.events.put_nowait(msg)
        return None

    async def call(self, msg: Message, timeout: float = 60.0) -> Message:
        assert self.peer is not None, "no agent joined"
        return await self.link.request(self.peer, msg, timeout)

    async def send(self, msg: Message) -> None:
        """A one-way message to the joined agent (stream-data, stream-control, ...)."""
        assert self.peer is not None, "no agent joined"
        await self.link.send(self.peer, msg)

    def stream_data(self, stream_id: str) -> bytes:
        return b"".join(m.data for m in self.streams[stream_id] if isinstance(m, StreamData))

    async def wait_stream(self, stream_id: str, pred: Callable[[list[Message]], bool],
                          timeout: float = 30.0) -> list[Message]:
        """Until ``pred`` holds for what the agent sent on ``stream_id``."""
        async with asyncio.timeout(timeout):
            while not pred(self.streams[stream_id]):
                self._stream_changed.clear()
                await self._stream_changed.wait()
        return self.streams[stream_id]

    async def next_join(self, timeout: float = 10.0) -> Join:
        return await asyncio.wait_for(self.joins.get(), timeout)


class AgentHarness:
    """Starts agents with one test-unique agent id; cleans up by label."""

    def __init__(self, manager: FakeManager, scratch_root: Path) -> None:
        self.manager = manager
        self.agent_id = "test-agent-" + uuid.uuid4().hex[:8]
        self.scratch_root = scratch_root
        self.agents: list[Agent] = []

    def config(self, **over: Any) -> AgentConfig:
        data: dict[str, Any] = {
            "agent_id": self.agent_id,
            "manager": {"endpoints": [self.manager.link.endpoint],
                        "public_key": self.manager.public_key, "join_token": TOKEN},
            "scratch_root": str(self.scratch_root),
            "runner": {"ready_timeout": 20},
        }
        data.update(over)
        return AgentConfig.model_validate(data)

    async def start(self, **over: Any) -> Agent:
        agent = Agent(self.config(**over), DockerBackend())
        self.agents.append(agent)
        await agent.start()
        return agent

    async def stop(self, agent: Agent) -> None:
        self.agents.remove(agent)
        await agent.stop()

    def create_msg(self, image: str = IMAGE, **over: Any) -> CreateKernel:
        fields: dict[str, Any] = {
            "kernel_id": str(uuid.uuid4()), "session_name": "test-sess",
            "access_key": "AKIATESTTESTTESTTEST", "image": image,
            "slots": {"cpu": "1", "mem": str(512 << 20)}, "environ": {"GREETING": "hi"}}
        fields.update(over)
        return CreateKernel(**fields)

    async def containers(self) -> list[dict[str, Any]]:
        async with aiodocker.Docker() as docker:
            rows = await docker.containers.list(
                all=True, filters={"label": [f"ai.backend.agent-id={self.agent_id}"]})
            shown = []
            for c in rows:
                try:
                    shown.append(await c.show())
                except aiodocker.DockerError as e:  # removed between the list and now
                    if e.status != 404:
                        raise
            return shown

    async def teardown(self) -> None:
        for agent in list(self.agents):
            with contextlib.suppress(Exception):
                await agent.stop()
        await remove_containers(self.agent_id)
        unmount_scratch(self.scratch_root)


async def remove_containers(agent_id: str) -> None:
    """Remove every container (running or not) labelled with ``agent_id``."""
    async with aiodocker.Docker() as docker:
        rows = await docker.containers.list(
            all=True, filters={"label": [f"ai.backend.agent-id={agent_id}"]})
        for c in rows:
            with contextlib.suppress(aiodocker.DockerError):
                await c.delete(force=True)


def loop_devices(image: Path) -> list[str]:
    """The loop devices backed by ``image`` (``losetup -j``), e.g. ``["/dev/loop3"]``."""
    out = subprocess.run(["losetup", "-j", str(image)], capture_output=True, text=True,
                         check=False).stdout
    return [line.split(":", 1)[0] for line in out.splitlines() if line.startswith("/dev/")]
