"""The container backend interface the agent drives (Docker is the real one).

Every method raises ``common.errors`` types only; an implementation translates its
library's errors at this boundary.
"""
from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

LABEL_KERNEL_ID = "ai.backend.kernel-id"
LABEL_SESSION = "ai.backend.session-name"
LABEL_OWNER = "ai.backend.owner"
LABEL_AGENT = "ai.backend.agent-id"
LABEL_MANAGED = "kraken.managed"
LABEL_SLOTS = "kraken.slots"
LABEL_GPUS = "kraken.gpus"
LABEL_IDLE_TIMEOUT = "kraken.idle-timeout"  # seconds; absent or 0: never
LABEL_KERNELSPEC = "ai.backend.kernelspec"


@dataclass(frozen=True)
class ContainerInfo:
    """What the agent needs to know about one of its containers."""

    container_id: str
    labels: dict[str, str]
    running: bool
    ip: str | None = None
    exit_code: int | None = None
    oom_killed: bool = False

    @property
    def kernel_id(self) -> str:
        return self.labels.get(LABEL_KERNEL_ID, "")


@dataclass(frozen=True)
class ContainerDied:
    """A ``die`` event of one of our containers."""

    container_id: str
    kernel_id: str
    exit_code: int | None
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ImageInfo:
    name: str  # repo:tag
    id: str
    labels: dict[str, str]

    def to_wire(self) -> dict[str, Any]:
        return {"name": self.name, "id": self.id, "labels": dict(self.labels)}


class ContainerBackend(abc.ABC):
    """Start, stop, destroy, inspect and recover kernel containers."""

    @abc.abstractmethod
    async def image_labels(self, image: str) -> dict[str, str]:
        """Labels of a local image; ``ImageNotFound`` if absent."""

    @abc.abstractmethod
    async def list_images(self) -> list[ImageInfo]:
        """Local images carrying the ``ai.backend.kernelspec`` label."""

    @abc.abstractmethod
    async def ensure_network(self, name: str) -> None:
        """Create the kernels' bridge network (no inter-container traffic) if missing."""

    @abc.abstractmethod
    async def create_and_start(self, config: dict[str, Any], name: str,
                               network: str) -> ContainerInfo:
        """Create and start a container; on failure nothing is left behind."""

    @abc.abstractmethod
    async def restart(self, container_id: str, timeout: int, network: str) -> ContainerInfo:
        """Restart in place (the writable mounts are kept)."""

    @abc.abstractmethod
    async def stop(self, container_id: str, timeout: int) -> None:
        """Stop a container; a missing or stopped one is not an error."""

    @abc.abstractmethod
    async def destroy(self, container_id: str) -> None:
        """Force-remove a container; a missing one is not an error."""

    @abc.abstractmethod
    async def inspect(self, container_id: str, network: str) -> ContainerInfo:
        """``KernelNotFound`` if the container is gone."""

    @abc.abstractmethod
    async def recover(self, agent_id: str, network: str) -> list[ContainerInfo]:
        """Every container (running or not) this agent's labels mark as ours."""

    async def logs(self, container_id: str, limit: int) -> str:
        """The container's console output (stdout and stderr), its last ``limit`` bytes."""
        raise NotImplementedError

    @abc.abstractmethod
    async def stats(self, container_id: str) -> dict[str, int]:
        """A one-shot Container Stats Object (seed 004 §2.9.8), scratch sizes excluded."""

    @abc.abstractmethod
    def die_events(self, agent_id: str) -> AsyncIterator[ContainerDied]:
        """``die`` events of this agent's containers, until ``close()``."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the engine connection."""
