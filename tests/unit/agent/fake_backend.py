"""A ContainerBackend in memory, whose steps a test can hold open (``gates``)."""
from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from agent.backend import ContainerBackend, ContainerDied, ContainerInfo, ImageInfo
from agent.config import AgentConfig
from common.errors import ImageNotFound, KernelNotFound

NO_RUNNER_IP = "127.0.0.77"  # nothing listens there: a runner that never answers


class FakeBackend(ContainerBackend):
    def __init__(self, ip: str = NO_RUNNER_IP) -> None:
        self.ip = ip
        self.containers: dict[str, ContainerInfo] = {}
        self.gates: dict[str, asyncio.Event] = {}  # step name → the test opens it
        self.entered: dict[str, asyncio.Event] = {}  # step name → set when a call reaches it
        self.cpu: dict[str, int] = {}
        self._ids = itertools.count(1)

    async def _step(self, name: str) -> None:
        self.entered.setdefault(name, asyncio.Event()).set()
        gate = self.gates.get(name)
        if gate is not None:
            await gate.wait()

    def hold(self, name: str) -> asyncio.Event:
        self.gates[name] = asyncio.Event()
        self.entered[name] = asyncio.Event()
        return self.gates[name]

    async def image_labels(self, image: str) -> dict[str, str]:
        await self._step("image_labels")
        if image != "kraken/python:latest":
            raise ImageNotFound(image)
        return {"ai.backend.features": "query batch"}

    async def list_images(self) -> list[ImageInfo]:
        return []

    async def ensure_network(self, name: str) -> None:
        return None

    async def create_and_start(self, config: dict[str, Any], name: str,
                               network: str) -> ContainerInfo:
        await self._step("create_and_start")
        cid = f"c{next(self._ids)}"
        info = ContainerInfo(container_id=cid, labels=dict(config.get("Labels") or {}),
                             running=True, ip=self.ip)
        self.containers[cid] = info
        return info

    async def restart(self, container_id: str, timeout: int, network: str) -> ContainerInfo:
        return self.containers[container_id]

    async def stop(self, container_id: str, timeout: int) -> None:
        return None

    async def destroy(self, container_id: str) -> None:
        self.containers.pop(container_id, None)

    async def inspect(self, container_id: str, network: str) -> ContainerInfo:
        try:
            return self.containers[container_id]
        except KeyError:
            raise KernelNotFound(container_id) from None

    async def recover(self, agent_id: str, network: str) -> list[ContainerInfo]:
        return list(self.containers.values())

    async def stats(self, container_id: str) -> dict[str, int]:
        return {"cpu_used": self.cpu.get(container_id, 0)}

    async def die_events(self, agent_id: str) -> AsyncIterator[ContainerDied]:  # type: ignore[override]
        await asyncio.Event().wait()
        yield ContainerDied(container_id="", kernel_id="", exit_code=None)

    async def close(self) -> None:
        return None


def agent_config(scratch: Path, **over: Any) -> AgentConfig:
    data: dict[str, Any] = {
        "agent_id": "unit-agent",
        "manager": {"endpoints": ["tcp://127.0.0.1:1"], "join_token": "t"},
        "scratch_root": str(scratch),
        "runner": {"ready_timeout": 30},
        "scratch": {"quota": "none"},  # unit tests mount nothing
    }
    data.update(over)
    return AgentConfig.model_validate(data)
