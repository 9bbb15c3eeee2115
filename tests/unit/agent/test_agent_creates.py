"""Creates in progress: visible, cancellable at every step, never leaving anything."""
from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import zmq.asyncio

from agent.backend import ContainerDied
from agent.creates import Tombstones
from agent.kernels import KernelRegistry
from agent.resources import ResourcePool
from common.errors import (
    AgentUnavailable,
    KernelCreationCancelled,
    KernelCreationFailed,
    KernelNotFound,
)
from common.msg_agent import CreateKernel, KernelTerminated
from tests.unit.agent.fake_backend import FakeBackend, agent_config

GiB = 1 << 30


class Setup:
    def __init__(self, tmp_path: Path) -> None:
        self.backend = FakeBackend()
        self.pool = ResourcePool(4, 8 * GiB, [])
        self.events: list[KernelTerminated] = []
        self.zctx = zmq.asyncio.Context()
        self.scratch = tmp_path / "scratch"
        self.registry = KernelRegistry(agent_config(self.scratch), self.backend, self.pool,
                                       self.zctx, self._sink)

    async def _sink(self, event: KernelTerminated) -> None:
        self.events.append(event)

    def msg(self) -> CreateKernel:
        return CreateKernel(kernel_id=str(uuid.uuid4()), session_name="s",
                            access_key="AKIATEST", image="kraken/python:latest",
                            slots={"cpu": "1", "mem": str(GiB)}, environ={})

    def left(self) -> tuple[int, int, list[Path]]:
        scratch = list(self.scratch.iterdir()) if self.scratch.exists() else []
        return len(self.backend.containers), int(self.pool.occupied.get_amount("mem")), scratch


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    s = Setup(tmp_path)
    yield s
    await s.registry.close()
    s.zctx.term()


async def started(s: Setup, step: str) -> tuple[CreateKernel, asyncio.Future[object]]:
    """Start a create and return once it reached ``step`` (held there if gated)."""
    msg = s.msg()
    task: asyncio.Future[object] = asyncio.ensure_future(s.registry.create(msg))
    entered = s.backend.entered.setdefault(step, asyncio.Event())
    await asyncio.wait_for(entered.wait(), 5)
    return msg, task


@pytest.mark.parametrize("step", ["image_labels", "create_and_start"])
async def test_destroy_while_a_docker_call_is_under_way(setup: Setup, step: str) -> None:
    gate = setup.backend.hold(step)
    msg, create = await started(setup, step)
    assert setup.registry.creating_ids == [msg.kernel_id]
    destroy = asyncio.ensure_future(setup.registry.destroy(msg.kernel_id))
    await asyncio.sleep(0.05)
    assert not destroy.done()  # the Docker call ends first, then its result is undone
    gate.set()
    assert await asyncio.wait_for(destroy, 5) == {}
    with pytest.raises(KernelCreationCancelled):
        await create
    assert setup.left() == (0, 0, [])
    assert setup.registry.creating_ids == [] and setup.registry.kernel_ids == []


async def test_destroy_while_waiting_for_the_runner(setup: Setup) -> None:
    msg, create = await started(setup, "create_and_start")
    await asyncio.sleep(0.1)  # pinging a runner that never answers
    assert len(setup.backend.containers) == 1
    assert setup.pool.occupied.get_amount("mem") == GiB  # a create holds its slots
    assert await asyncio.wait_for(setup.registry.destroy(msg.kernel_id), 5) == {}
    with pytest.raises(KernelCreationCancelled):
        await create
    assert setup.left() == (0, 0, [])
    assert setup.events == []


async def test_die_event_during_create_fails_it_cleanly(setup: Setup) -> None:
    msg, create = await started(setup, "create_and_start")
    await asyncio.sleep(0.05)
    (cid,) = setup.backend.containers
    await setup.registry.on_died(ContainerDied(container_id=cid, kernel_id=msg.kernel_id,
                                               exit_code=1))
    with pytest.raises(KernelCreationFailed):
        await asyncio.wait_for(create, 5)
    assert setup.left() == (0, 0, [])


async def test_shutdown_during_create_undoes_it(setup: Setup) -> None:
    _msg, create = await started(setup, "create_and_start")
    await asyncio.sleep(0.05)
    await asyncio.wait_for(setup.registry.cancel_creates(), 5)
    with pytest.raises(AgentUnavailable):
        await create
    assert setup.left() == (0, 0, [])


async def test_a_closed_request_does_not_cut_the_create(setup: Setup) -> None:
    """The manager link closing cancels the handler, not the create: it is then undone
    by shutdown, never half-way through a Docker call."""
    gate = setup.backend.hold("create_and_start")
    msg, create = await started(setup, "create_and_start")
    create.cancel()
    gate.set()
    await asyncio.sleep(0.05)
    assert setup.registry.creating_ids == [msg.kernel_id]
    await asyncio.wait_for(setup.registry.cancel_creates(), 5)
    assert setup.left() == (0, 0, [])


async def test_create_after_destroy_is_refused(setup: Setup) -> None:
    msg = setup.msg()
    with pytest.raises(KernelNotFound):
        await setup.registry.destroy(msg.kernel_id)
    with pytest.raises(KernelCreationCancelled):
        await setup.registry.create(msg)
    assert setup.left() == (0, 0, [])


async def test_drop_destroys_only_what_is_named(setup: Setup) -> None:
    a, create_a = await started(setup, "create_and_start")
    setup.backend.entered.pop("create_and_start")
    b, create_b = await started(setup, "create_and_start")
    assert await setup.registry.drop([a.kernel_id, str(uuid.uuid4())], "test") == [a.kernel_id]
    with pytest.raises(KernelCreationCancelled):
        await create_a
    assert setup.registry.creating_ids == [b.kernel_id]
    await setup.registry.cancel_creates()
    with pytest.raises(AgentUnavailable):
        await create_b


def test_tombstones_expire_and_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("agent.creates.time.monotonic", lambda: now[0])
    stones = Tombstones(ttl=10, limit=3)
    for kid in "abcd":
        stones.add(kid)
    assert "a" not in stones and all(k in stones for k in "bcd")
    now[0] += 11
    assert "d" not in stones
