"""Two manager replicas on one database and Redis, one agent joined to both (as a
real agent dials every endpoint): any replica serves any session, an agent heard by
either is alive, and a destroy through one is not served stale by the other."""
from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from manager.api.keys import CONTROL, REGISTRY, SWEEPER
from manager.config import ManagerConfig
from manager.db.tables import agents, kernels
from manager.services.routes import ROUTE_TTL
from tests.integration.manager.conftest import (
    FakeAgent,
    Harness,
    fast_liveness,
    make_manager_config,
    open_harness,
    wait_for,
)


@pytest.fixture
async def pair(mgr_config: ManagerConfig, tmp_path: Path
               ) -> AsyncIterator[tuple[Harness, Harness]]:
    other = make_manager_config(mgr_config.db.url, tmp_path / "b")
    other = other.model_copy(update={"link": other.link.model_copy(
        update={"join_token": mgr_config.link.join_token})})
    async with open_harness(mgr_config) as a, open_harness(other, truncate=False) as b:
        b.access_key, b.secret_key = a.access_key, a.secret_key
        yield a, b


async def _both(a: Harness, b: Harness) -> tuple[FakeAgent, FakeAgent]:
    """One agent process with a link to each replica (shared container state)."""
    on_a = await a.agent(cpu="64", mem=str(64 << 30))
    on_b = b.fake_agent(cpu="64", mem=str(64 << 30))
    on_b.kernels = on_a.kernels  # the same set object: the same containers
    await on_b.start()
    return on_a, on_b


async def test_any_replica_serves_any_session(pair: tuple[Harness, Harness]) -> None:
    a, b = pair
    on_a, on_b = await _both(a, b)
    assert (await a.create("shared"))[0] == 201
    status, body = await b.call("POST", "/kernel/shared", {"code": "1"})
    assert status == 200 and body["result"]["status"] == "finished", body
    status, body = await b.call("GET", "/kernel/shared")
    assert status == 200 and body["status"] == "RUNNING"
    # a burst spread over both replicas
    results = await asyncio.gather(*(h.create(f"spread-{i}") for i, h in
                                     enumerate([a, b, a, b])))
    assert [c for c, _ in results] == [201] * 4, results
    assert len(on_a.kernels) == 5


async def test_an_agent_heard_by_one_replica_is_alive(pair: tuple[Harness, Harness]) -> None:
    a, b = pair
    on_a, on_b = await _both(a, b)
    assert (await b.create("kept"))[0] == 201
    on_a.stop_heartbeats()  # its link to replica A is quiet; B still hears it
    registry_a = fast_liveness(a.app, timeout=0.6, grace=0.01)
    fast_liveness(b.app, timeout=0.6, grace=0.01)
    await wait_for(lambda: not registry_a.hears("agent-1"), what="A to stop hearing")
    started = time.monotonic()
    status, body = await a.call("POST", "/kernel/kept", {"code": "1"})
    assert status == 503 and body["type"].endswith("agent-unavailable"), body
    assert time.monotonic() - started < 3.0  # fails fast, not the 5 s execute timeout
    for _ in range(5):
        assert await registry_a.check_liveness() == []
        await asyncio.sleep(0.3)
    async with a.engine.connect() as conn:
        assert (await conn.execute(sa.select(agents.c.status))).scalar_one() == "ALIVE"
    (row,) = await a.sessions()
    assert row.status == "RUNNING"
    status, body = await b.call("POST", "/kernel/kept", {"code": "1"})
    assert status == 200, body


async def test_a_destroy_via_one_replica_is_not_served_stale_by_the_other(
        pair: tuple[Harness, Harness]) -> None:
    a, b = pair
    await _both(a, b)
    assert (await a.create("gone"))[0] == 201
    assert (await a.call("POST", "/kernel/gone", {"code": "1"}))[0] == 200  # cached on A
    routes_a = a.app[CONTROL]._routes
    assert routes_a.get(a.access_key, "gone") is not None
    assert (await b.call("DELETE", "/kernel/gone"))[0] == 200
    # B's transition reaches A through the Redis event bus, well before the TTL
    await wait_for(lambda: routes_a.get(a.access_key, "gone") is None, timeout=ROUTE_TTL / 2,
                   what="A to forget the route")
    status, body = await a.call("POST", "/kernel/gone", {"code": "1"})
    assert status == 404 and body["type"].endswith("kernel-not-found"), body
    await asyncio.sleep(ROUTE_TTL)
    status, body = await a.call("POST", "/kernel/gone", {"code": "1"})
    assert status == 404, body


async def test_killing_one_replica_leaves_the_other_serving(
        pair: tuple[Harness, Harness]) -> None:
    a, b = pair
    await _both(a, b)
    assert (await a.create("survives"))[0] == 201
    await a.app[REGISTRY].close()  # replica A's link goes away
    status, body = await b.call("POST", "/kernel/survives", {"code": "1"})
    assert status == 200, body
    assert (await b.create("more"))[0] == 201


async def test_a_create_whose_replica_died_is_adopted_at_once(
        pair: tuple[Harness, Harness]) -> None:
    """Issue 8 item 4: the manager killed mid-create. The agent still creates it; the
    other replica sees that the create's owner is gone and adopts the container."""
    a, b = pair
    on_a, on_b = await _both(a, b)
    on_b.creating = on_a.creating  # the same agent process
    await wait_for(lambda: a.app[REGISTRY].lease.held.is_set(), what="A's lease")
    await wait_for(lambda: b.app[REGISTRY].lease.trusted(), timeout=20, what="B's lease")
    on_a.hold_create = asyncio.Event()
    create = asyncio.ensure_future(a.create("orphan"))
    await wait_for(lambda: on_a.creating, what="the create on the agent")
    (row,) = await b.sessions()
    assert row.status == "PREPARING" and row.status_info.startswith("|owner:")
    await a.app[REGISTRY].lease.close()  # replica A dies (its lock goes with it)
    kernel_id = next(iter(on_a.creating))
    on_a.kernels.add(kernel_id)  # the agent finished creating it
    started = time.monotonic()

    async def adopted() -> bool:
        (row,) = await b.sessions()
        return bool((row.status, row.status_info) == ("RUNNING", "recovered"))
    await wait_for(adopted, what="adoption by replica B")
    assert time.monotonic() - started < 5  # not the 90 s preparing deadline
    assert on_a.destroyed == [] and on_b.destroyed == []
    status, body = await b.call("POST", "/kernel/orphan", {"code": "1"})
    assert status == 200, body
    create.cancel()


async def test_a_destroy_whose_replica_died_is_finished_by_the_other(
        pair: tuple[Harness, Harness]) -> None:
    a, b = pair
    on_a, on_b = await _both(a, b)
    await wait_for(lambda: b.app[REGISTRY].lease.trusted(), timeout=20, what="B's lease")
    assert (await a.create("halfway"))[0] == 201
    on_a.hold_destroy = asyncio.Event()  # A's destroy never reaches the agent's answer
    destroy = asyncio.ensure_future(a.call("DELETE", "/kernel/halfway"))
    await wait_for(lambda: _status_is(b, "TERMINATING"), what="TERMINATING")
    await a.app[REGISTRY].lease.close()  # replica A dies mid-destroy
    started = time.monotonic()
    await wait_for(lambda: _status_is(b, "TERMINATED"), what="B to finish the destroy")
    assert time.monotonic() - started < 5  # not the 60 s terminating deadline
    (row,) = await b.sessions()
    assert row.status_info == "user-requested"
    assert on_a.kernels == set()  # B's DestroyKernel removed the container
    destroy.cancel()


async def _status_is(h: Harness, status: str) -> bool:
    rows = await h.sessions()
    return bool(rows and rows[0].status == status)


async def test_two_replicas_sweeping_at_once_settle_each_session_once(
        pair: tuple[Harness, Harness]) -> None:
    a, b = pair
    await _both(a, b)
    async with a.engine.begin() as conn:
        for i in range(20):
            await conn.execute(sa.insert(kernels).values(
                id=uuid.uuid4(), session_name=f"stuck-{i}", access_key=a.access_key,
                lang="python", status="PENDING",
                status_changed=sa.func.now() - sa.text("interval '1 hour'")))
    results = await asyncio.gather(*(h.app[SWEEPER].sweep() for h in (a, b, a, b)))
    moved = [t.kernel_id for done in results for t in done]
    assert len(moved) == len(set(moved)) == 20
    assert {r.status for r in await a.sessions()} == {"CANCELLED"}
