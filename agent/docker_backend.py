"""``DockerBackend``: the ContainerBackend on a real Docker engine, through aiodocker.

aiodocker's ``DockerError`` never leaves this module: a missing image becomes
``ImageNotFound``, a missing container ``KernelNotFound``, a failed create
``KernelCreationFailed`` and anything else ``AgentError``.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiodocker
from aiodocker.exceptions import DockerError

from agent.backend import (
    LABEL_AGENT,
    LABEL_KERNEL_ID,
    LABEL_KERNELSPEC,
    LABEL_MANAGED,
    ContainerBackend,
    ContainerDied,
    ContainerInfo,
    ImageInfo,
)
from agent.stats import stats_from_docker
from common.errors import AgentError, ImageNotFound, KernelCreationFailed, KernelNotFound

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _translated(what: str) -> Iterator[None]:
    try:
        yield
    except DockerError as e:
        if e.status == 404:
            raise KernelNotFound(f"{what}: {e.message}") from None
        raise AgentError(f"{what}: {e.message}") from None


def _info(data: dict[str, Any], network: str) -> ContainerInfo:
    state = data.get("State") or {}
    nets = (data.get("NetworkSettings") or {}).get("Networks") or {}
    ip = (nets.get(network) or {}).get("IPAddress") or None
    return ContainerInfo(
        container_id=data["Id"],
        labels=dict((data.get("Config") or {}).get("Labels") or {}),
        running=bool(state.get("Running")),
        ip=ip,
        exit_code=state.get("ExitCode"),
        oom_killed=bool(state.get("OOMKilled")),
    )


class DockerBackend(ContainerBackend):
    """Kernel containers on the local Docker engine."""

    def __init__(self, docker: aiodocker.Docker | None = None) -> None:
        self._docker = docker or aiodocker.Docker()

    async def image_labels(self, image: str) -> dict[str, str]:
        try:
            data = await self._docker.images.inspect(image)
        except DockerError as e:
            if e.status == 404:
                raise ImageNotFound(f"image {image!r} is not on this agent") from None
            raise AgentError(f"inspecting image {image!r}: {e.message}") from None
        return dict((data.get("Config") or {}).get("Labels") or {})

    async def list_images(self) -> list[ImageInfo]:
        with _translated("listing images"):
            rows = await self._docker.images.list(filters={"label": [LABEL_KERNELSPEC]})
        out = []
        for row in rows:
            for tag in row.get("RepoTags") or []:
                if tag != "<none>:<none>":
                    out.append(ImageInfo(name=tag, id=row["Id"], labels=row.get("Labels") or {}))
        return sorted(out, key=lambda i: i.name)

    async def ensure_network(self, name: str) -> None:
        try:
            await self._docker.networks.get(name)
            return
        except DockerError as e:
            if e.status != 404:
                raise AgentError(f"inspecting network {name}: {e.message}") from None
        config = {
            "Name": name, "Driver": "bridge", "CheckDuplicate": True,
            "Options": {"com.docker.network.bridge.enable_icc": "false"},
            "Labels": {LABEL_MANAGED: "1"},
        }
        try:
            await self._docker.networks.create(config)
        except DockerError as e:
            if e.status != 409:  # created meanwhile by another agent process
                raise AgentError(f"creating network {name}: {e.message}") from None

    async def create_and_start(self, config: dict[str, Any], name: str,
                               network: str) -> ContainerInfo:
        try:
            container = await self._docker.containers.create(config, name=name)
        except DockerError as e:
            if e.status == 404 and "image" in e.message.lower():
                raise ImageNotFound(f"image {config.get('Image')!r}: {e.message}") from None
            raise KernelCreationFailed(f"creating container: {e.message}") from None
        try:
            await container.start()
            return _info(await container.show(), network)
        except DockerError as e:
            await self.destroy(container.id)
            raise KernelCreationFailed(f"starting container: {e.message}") from None
        except BaseException:
            await asyncio.shield(self.destroy(container.id))
            raise

    async def restart(self, container_id: str, timeout: int, network: str) -> ContainerInfo:
        with _translated(f"restarting {container_id[:12]}"):
            container = self._docker.containers.container(container_id)
            await container.restart(timeout=timeout)
            return _info(await container.show(), network)

    async def stop(self, container_id: str, timeout: int) -> None:
        try:
            await self._docker.containers.container(container_id).stop(t=timeout)
        except DockerError as e:
            if e.status not in (304, 404):
                raise AgentError(f"stopping {container_id[:12]}: {e.message}") from None

    async def destroy(self, container_id: str) -> None:
        try:
            await self._docker.containers.container(container_id).delete(force=True, v=True)
        except DockerError as e:
            if e.status == 409 and "in progress" in e.message:
                return
            if e.status != 404:
                raise AgentError(f"removing {container_id[:12]}: {e.message}") from None

    async def inspect(self, container_id: str, network: str) -> ContainerInfo:
        with _translated(f"container {container_id[:12]}"):
            data = await self._docker.containers.container(container_id).show()
        return _info(data, network)

    async def recover(self, agent_id: str, network: str) -> list[ContainerInfo]:
        labels = [f"{LABEL_AGENT}={agent_id}", f"{LABEL_MANAGED}=1"]
        with _translated("listing containers"):
            rows = await self._docker.containers.list(all=True, filters={"label": labels})
            found = [await self._inspect_or_none(c.id, network) for c in rows]
        return [info for info in found if info is not None]

    async def _inspect_or_none(self, container_id: str, network: str) -> ContainerInfo | None:
        try:
            return await self.inspect(container_id, network)
        except KernelNotFound:
            return None

    async def stats(self, container_id: str) -> dict[str, int]:
        with _translated(f"stats of {container_id[:12]}"):
            raw = await self._docker._query_json(
                f"containers/{container_id}/stats",
                params={"stream": "0", "one-shot": "1"})
        return stats_from_docker(raw if isinstance(raw, dict) else {})

    async def logs(self, container_id: str, limit: int) -> str:
        with _translated(f"logs of {container_id[:12]}"):
            lines = await self._docker.containers.container(container_id).log(
                stdout=True, stderr=True)
        text = "".join(lines)
        return text[-limit:] if len(text) > limit else text

    async def die_events(self, agent_id: str) -> AsyncIterator[ContainerDied]:  # type: ignore[override]
        filters = {"type": ["container"], "event": ["die"],
                   "label": [f"{LABEL_AGENT}={agent_id}", f"{LABEL_MANAGED}=1"]}
        sub = self._docker.events.subscribe(filters=json.dumps(filters))
        while True:
            event = await sub.get()
            if event is None:
                return
            actor = event.get("Actor") or {}
            attrs = dict(actor.get("Attributes") or {})
            code = attrs.get("exitCode")
            yield ContainerDied(container_id=actor.get("ID", ""),
                                kernel_id=attrs.get(LABEL_KERNEL_ID, ""),
                                exit_code=int(code) if code is not None else None,
                                attributes=attrs)

    async def close(self) -> None:
        events = self._docker.events
        await events.stop()
        if events.task is not None:
            events.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, DockerError):
                await events.task
        await self._docker.close()
