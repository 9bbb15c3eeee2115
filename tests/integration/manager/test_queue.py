"""The PENDING queue with real PostgreSQL and Redis and fake agents: a create that does
not fit waits and runs as soon as room frees; deadlines, enqueueOnly, admin reorder and
cancel (GraphQL and CLI), two replicas placing without ever placing twice.

The safety pass is set to an hour, so a queued session that runs was placed by an event
(a session ending, an agent joining), never by a timer.
"""
from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from manager.api.keys import CREATOR, SWEEPER
from manager.cli import main
from manager.config import ManagerConfig
from tests.integration.manager.conftest import (
    FakeAgent,
    Harness,
    make_manager_config,
    open_harness,
    wait_for,
)

NO_TIMER = {"scheduler": {"sweep_interval": 3600.0}}
ONE_CORE = {"instanceCores": 1, "instanceMemory": 0.25}


@pytest.fixture
def mgr_config(mgr_db_url: str, tmp_path: Path) -> ManagerConfig:
    return make_manager_config(mgr_db_url, tmp_path, **NO_TIMER)


async def create(h: Harness, token: str, keys: tuple[str, str] | None = None,
                 **top: Any) -> tuple[int, Any]:
    return await h.call("POST", "/kernel/create", {
        "lang": "python", "clientSessionToken": token, "config": dict(ONE_CORE), **top},
        keys)


async def row_of(h: Harness, token: str) -> Any:
    rows = [r for r in await h.sessions() if r.session_name == token]
    return max(rows, key=lambda r: r.created_at) if rows else None


async def queued(h: Harness, token: str) -> Any:
    row = await row_of(h, token)
    return row if row is not None and row.status == "PENDING" and row.queued_at else None


async def gql(h: Harness, query: str, **variables: Any) -> Any:
    status, body = await h.call("POST", "/admin/graphql",
                                {"query": query, "variables": variables})
    assert status == 200 and "errors" not in body, body
    return body  # the data itself (seed 004 §2.16)


@pytest.fixture
async def admin(harness: Harness) -> Harness:
    harness.access_key, harness.secret_key = await harness.keypair(is_admin=True,
                                                                   concurrency_limit=50)
    return harness


async def test_full_cluster_queues_and_a_destroy_places_at_once(admin: Harness) -> None:
    h = admin
    fake = await h.agent(cpu="1", mem=str(4 << 30))
    assert (await create(h, "first"))[0] == 201
    waiting = asyncio.ensure_future(create(h, "second", maxWaitSeconds=60))
    await wait_for(lambda: queued(h, "second"), what="second queued")
    status, info = await h.call("GET", "/kernel/second")
    assert status == 200 and info["status"] == "PENDING" and info["queuePosition"] == 1
    assert not waiting.done()
    assert (await h.call("DELETE", "/kernel/first"))[0] == 200
    status, body = await waiting
    assert (status, body) == (201, {"kernelId": "second", "created": True})
    row = await row_of(h, "second")
    assert row.status == "RUNNING" and row.agent_id == fake.agent_id
    assert [c.session_name for c in fake.created] == ["first", "second"]
    status, info = await h.call("GET", "/kernel/second")
    assert info["queuePosition"] is None


def only_agents_kick(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """Passes start only from the agent registry's hook (it holds the real ``kick``):
    not from the event bus, which other test runs on the same Redis also feed."""
    monkeypatch.setattr(h.app[CREATOR].queue, "kick", lambda: None)


async def test_an_agent_joining_places_the_queue(admin: Harness,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    h = admin
    await h.agent(cpu="1", mem=str(4 << 30))
    assert (await create(h, "first"))[0] == 201
    only_agents_kick(h, monkeypatch)
    waiting = asyncio.ensure_future(create(h, "second", maxWaitSeconds=60))
    await wait_for(lambda: queued(h, "second"), what="second queued")
    late = await h.agent("agent-2", cpu="2", mem=str(4 << 30))
    assert (await waiting)[0] == 201
    assert (await row_of(h, "second")).agent_id == late.agent_id


async def test_an_agent_reporting_more_room_places_the_queue(
        admin: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    h = admin
    only_agents_kick(h, monkeypatch)
    fake = await h.agent(cpu="2", mem=str(4 << 30))
    fake.occupied = {"cpu": "2", "mem": "0"}  # held by something the manager does not know

    async def stored(cpu: str) -> bool:
        async with h.engine.connect() as conn:
            return bool((await conn.execute(sa.text(
                "SELECT occupied_slots->>'cpu' = :cpu FROM agents"), {"cpu": cpu})).scalar())

    await wait_for(lambda: stored("2"), what="the report stored")
    waiting = asyncio.ensure_future(create(h, "squeezed", maxWaitSeconds=60))
    await wait_for(lambda: queued(h, "squeezed"), what="squeezed queued")
    fake.occupied = {}  # the next heartbeat reports the room
    assert (await waiting)[0] == 201


async def test_max_wait_expiry_cancels_with_the_reason(admin: Harness) -> None:
    h = admin
    await h.agent(cpu="1", mem=str(4 << 30))
    assert (await create(h, "first"))[0] == 201
    status, body = await create(h, "late", maxWaitSeconds=0.2)
    assert status == 503, body
    assert body["type"] == "https://api.backend.ai/probs/session-queue-timeout"
    row = await row_of(h, "late")
    assert (row.status, row.status_info) == ("CANCELLED", "session-queue-timeout")
    # the token is free again, and a bad maxWaitSeconds is refused before anything
    for bad in (0, -1, "10", True, 10**6):
        status, body = await create(h, "late", maxWaitSeconds=bad)
        assert status == 400 and "maxWaitSeconds" in body["title"] + body.get("detail", "")


async def test_enqueue_only_answers_pending_and_runs_later(admin: Harness) -> None:
    h = admin
    fake = await h.agent(cpu="1", mem=str(4 << 30))
    status, body = await create(h, "right-now", enqueueOnly=True)  # room: placed in background
    assert (status, body) == (201, {"kernelId": "right-now", "created": True,
                                    "status": "PENDING"}), body
    await wait_for(lambda: fake.kernels, what="the enqueued session created")
    await wait_for(lambda: _running(h, "right-now"), what="now RUNNING")
    status, body = await create(h, "later", enqueueOnly=True)
    assert status == 201 and body["status"] == "PENDING"
    row = await queued(h, "later")
    assert row is not None and row.queue_deadline is None  # no maxWaitSeconds: no deadline
    assert (await h.call("DELETE", "/kernel/right-now"))[0] == 200
    await wait_for(lambda: _running(h, "later"), what="later RUNNING")


async def _running(h: Harness, token: str) -> bool:
    row = await row_of(h, token)
    return row is not None and row.status == "RUNNING"


async def test_fifo_order_is_kept(admin: Harness) -> None:
    h = admin
    await h.agent(cpu="1", mem=str(4 << 30))
    assert (await create(h, "sess0"))[0] == 201
    for i in range(1, 4):
        assert (await create(h, f"sess{i}", enqueueOnly=True))[0] == 201
    positions = [(await h.call("GET", f"/kernel/sess{i}"))[1]["queuePosition"] for i in (1, 2, 3)]
    assert positions == [1, 2, 3]
    for i in range(1, 4):
        assert (await h.call("DELETE", f"/kernel/sess{i - 1}"))[0] == 200
        await wait_for(lambda i=i: _running(h, f"sess{i}"), what=f"s{i} RUNNING")
        later = [(await row_of(h, f"sess{j}")).status for j in range(i + 1, 4)]
        assert later == ["PENDING"] * len(later)


async def test_a_small_request_does_not_overtake_the_head(admin: Harness) -> None:
    h = admin
    await h.agent(cpu="2", mem=str(4 << 30))
    assert (await create(h, "one-core"))[0] == 201
    big = {"lang": "python", "clientSessionToken": "big-one", "enqueueOnly": True,
           "config": {"instanceCores": 2, "instanceMemory": 0.25}}
    assert (await h.call("POST", "/kernel/create", big))[0] == 201
    # one core is free, but the 2-core head waits for it: the small one queues behind
    assert (await create(h, "small", enqueueOnly=True))[0] == 201
    await h.app[CREATOR].queue.run_pass()
    assert (await row_of(h, "small")).status == "PENDING"
    assert (await h.call("DELETE", "/kernel/one-core"))[0] == 200
    await wait_for(lambda: _running(h, "big-one"), what="big RUNNING")
    assert (await row_of(h, "small")).status == "PENDING"


async def test_admin_reorders_and_cancels_in_graphql(admin: Harness) -> None:
    h = admin
    await h.agent(cpu="1", mem=str(4 << 30))
    assert (await create(h, "busy"))[0] == 201
    waiting = asyncio.ensure_future(create(h, "first-in", maxWaitSeconds=60))
    await wait_for(lambda: queued(h, "first-in"), what="first-in queued")
    assert (await create(h, "second-in", enqueueOnly=True))[0] == 201
    data = await gql(h, "{ queued_sessions { id sess_id queue_position priority } }")
    listed = {q["sess_id"]: q for q in data["queued_sessions"]}
    assert [listed["first-in"]["queue_position"], listed["second-in"]["queue_position"]] \
        == [1, 2]
    moved = await gql(h, "mutation($id: String!) { move_queued_session(id: $id, "
                      "to_front: true) { ok msg } }", id=listed["second-in"]["id"])
    assert moved["move_queued_session"] == {"ok": True, "msg": "success"}
    data = await gql(h, "{ compute_session(sess_id: \"second-in\") { queue_position } }")
    assert data["compute_session"]["queue_position"] == 1
    cancelled = await gql(h, "mutation($id: String!) { cancel_queued_session(id: $id) "
                          "{ ok } }", id=listed["first-in"]["id"])
    assert cancelled["cancel_queued_session"]["ok"] is True
    status, body = await waiting  # the waiting create answers at once
    assert status == 409 and body["type"].endswith("kernel-creation-cancelled"), body
    assert "cancelled-by-admin" in body["detail"]
    again = await gql(h, "mutation($id: String!) { cancel_queued_session(id: $id) "
                      "{ ok msg } }", id=listed["first-in"]["id"])
    assert again["cancel_queued_session"] == {"ok": False, "msg": "no such queued session"}
    assert (await h.call("DELETE", "/kernel/busy"))[0] == 200
    await wait_for(lambda: _running(h, "second-in"), what="second-in RUNNING")


async def test_queue_admin_is_refused_to_plain_keypairs(admin: Harness) -> None:
    plain = await admin.keypair()
    for query in ("{ queued_sessions { id } }",
                  "mutation { cancel_queued_session(id: \"x\") { ok } }"):
        status, body = await admin.call("POST", "/admin/graphql", {"query": query}, plain)
        assert status == 403 and "admin" in str(body), (status, body)


async def test_a_client_that_disconnects_leaves_the_session_queued(admin: Harness) -> None:
    h = admin
    await h.agent(cpu="1", mem=str(4 << 30))
    assert (await create(h, "busy"))[0] == 201
    waiting = asyncio.ensure_future(create(h, "gone", maxWaitSeconds=60))
    await wait_for(lambda: queued(h, "gone"), what="gone queued")
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert await queued(h, "gone")
    assert (await h.call("DELETE", "/kernel/busy"))[0] == 200
    await wait_for(lambda: _running(h, "gone"), what="gone RUNNING without its caller")


async def test_the_same_token_again_waits_for_the_queued_session(admin: Harness) -> None:
    h = admin
    await h.agent(cpu="1", mem=str(4 << 30))
    assert (await create(h, "busy"))[0] == 201
    assert (await create(h, "again", enqueueOnly=True))[0] == 201
    # the client comes back with its token: it waits for that session, not a new one
    waiting = asyncio.ensure_future(create(h, "again", maxWaitSeconds=60))
    await wait_for(lambda: h.app[CREATOR].queue.waiting() == 1, what="the call waiting")
    assert (await h.call("DELETE", "/kernel/busy"))[0] == 200
    assert await waiting == (200, {"kernelId": "again", "created": False})
    assert await _running(h, "again")
    assert len([r for r in await h.sessions() if r.session_name == "again"]) == 1


async def test_cli_lists_moves_and_cancels(admin: Harness, mgr_config: ManagerConfig) -> None:
    h = admin
    await h.agent(cpu="1", mem=str(4 << 30))
    assert (await create(h, "busy"))[0] == 201
    for token in ("queued-1", "queued-2"):
        assert (await create(h, token, enqueueOnly=True))[0] == 201
    q2 = (await row_of(h, "queued-2")).id
    env = {"KRAKEN_MANAGER__DB__URL": mgr_config.db.url,
           "KRAKEN_MANAGER__REDIS__URL": mgr_config.redis.url}

    def cli(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(main, ["queue", *args], env=env)
        return result.exit_code, result.output

    code, out = await asyncio.to_thread(cli, "list")
    assert code == 0 and [line.split("\t")[4] for line in out.splitlines()] == ["queued-1", "queued-2"]
    assert (await asyncio.to_thread(cli, "move", str(q2), "--front"))[0] == 0
    code, out = await asyncio.to_thread(cli, "list")
    assert [line.split("\t")[4] for line in out.splitlines()] == ["queued-2", "queued-1"]
    q1 = (await row_of(h, "queued-1")).id
    assert (await asyncio.to_thread(cli, "cancel", str(q1)))[0] == 0
    row = await row_of(h, "queued-1")
    assert (row.status, row.status_info) == ("CANCELLED", "cancelled-by-admin")
    code, out = await asyncio.to_thread(cli, "cancel", str(uuid.uuid4()))
    assert code != 0 and "is not queued" in out
    assert (await asyncio.to_thread(cli, "move", str(q2)))[0] != 0  # neither option


# ---- two replicas -----------------------------------------------------------------------

@pytest.fixture
async def pair(mgr_config: ManagerConfig, tmp_path: Path
               ) -> AsyncIterator[tuple[Harness, Harness]]:
    other = make_manager_config(mgr_config.db.url, tmp_path / "b", **NO_TIMER)
    other = other.model_copy(update={"link": other.link.model_copy(
        update={"join_token": mgr_config.link.join_token})})
    async with open_harness(mgr_config) as a, open_harness(other, truncate=False) as b:
        b.access_key, b.secret_key = a.access_key, a.secret_key
        yield a, b


async def test_two_replicas_never_place_a_session_twice(
        pair: tuple[Harness, Harness]) -> None:
    a, b = pair
    on_a = await a.agent(cpu="3", mem=str(64 << 30))
    on_b = b.fake_agent(cpu="3", mem=str(64 << 30))
    on_b.kernels = on_a.kernels  # one agent process, a link to each replica
    await on_b.start()
    keys = await a.keypair(concurrency_limit=50)
    for i in range(12):
        h = (a, b)[i % 2]
        assert (await create(h, f"rep-{i}", keys, enqueueOnly=True))[0] == 201
    # both replicas pass at once, again and again, while sessions end and free room
    for round_ in range(4):
        await asyncio.gather(*(h.app[CREATOR].queue.run_pass() for h in (a, b, a, b)))
        await wait_for(lambda: len(on_a.kernels) == 3, what=f"round {round_} full")
        for kernel_id in list(on_a.kernels):
            assert (await a.call("DELETE", f"/kernel/{await _token(a, kernel_id)}",
                                 keys=keys))[0] == 200
    created = [c.kernel_id for c in on_a.created + on_b.created]
    assert len(created) == len(set(created)) == 12


async def _token(h: Harness, kernel_id: str) -> str:
    return next(r.session_name for r in await h.sessions() if str(r.id) == kernel_id)


async def test_the_official_flow_with_fake_agent_still_answers_201(harness: Harness) -> None:
    fake: FakeAgent = await harness.agent()
    assert (await harness.create("plain"))[0] == 201
    assert fake.created and fake.created[0].session_name == "plain"


async def test_the_pass_expires_a_queued_session_nobody_waits_for(admin: Harness) -> None:
    h = admin
    await h.agent(cpu="1", mem=str(4 << 30))
    assert (await create(h, "busy"))[0] == 201
    assert (await create(h, "short", enqueueOnly=True, maxWaitSeconds=0.1))[0] == 201
    assert (await create(h, "patient", enqueueOnly=True))[0] == 201

    async def overdue() -> bool:
        async with h.engine.connect() as conn:
            return bool((await conn.execute(sa.text(
                "SELECT now() > queue_deadline FROM kernels WHERE session_name = 'short'"
            ))).scalar())

    await wait_for(overdue, what="the deadline passed")
    await h.app[CREATOR].queue.run_pass()
    row = await row_of(h, "short")
    assert (row.status, row.status_info) == ("CANCELLED", "session-queue-timeout")
    assert await queued(h, "patient")
    status, info = await h.call("GET", "/kernel/patient")
    assert info["queuePosition"] == 1


async def test_the_reconcile_sweep_leaves_queued_sessions_alone(admin: Harness) -> None:
    h = admin
    await h.agent(cpu="1", mem=str(4 << 30))
    assert (await create(h, "busy"))[0] == 201
    assert (await create(h, "queued-long", enqueueOnly=True))[0] == 201
    async with h.engine.begin() as conn:  # as if queued an hour ago: past pending_deadline
        await conn.execute(sa.text("UPDATE kernels SET status_changed = now() - interval "
                                   "'1 hour' WHERE session_name = 'queued-long'"))
    assert await h.app[SWEEPER].sweep() == []
    assert await queued(h, "queued-long")
