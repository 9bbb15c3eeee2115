"""Issue 8, manager side: reconciliation against a fake agent speaking the real
protocol — destroy during create, fail-fast on reconnect, stuck sessions, capacity
from the agent's report, creates while the agent is lost, bursts under the quota."""
from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import sqlalchemy as sa

from common.msg_agent import JoinAccepted
from manager.api.keys import REGISTRY, SWEEPER
from manager.db.tables import kernel_events, kernels
from tests.integration.manager.conftest import FakeAgent, lose, wait_for


async def _row(harness: Any, token: str) -> Any:
    rows = [r for r in await harness.sessions() if r.session_name == token]
    return max(rows, key=lambda r: r.created_at)


async def _status(harness: Any, token: str) -> tuple[str, str | None]:
    row = await _row(harness, token)
    return row.status, row.status_info


async def test_destroy_during_create_cancels_it(harness: Any) -> None:
    fake = await harness.agent()
    fake.hold_create = asyncio.Event()  # never set: the create hangs on the agent
    create = asyncio.ensure_future(harness.create("doomed"))
    await wait_for(lambda: fake.creating, what="the create to reach the agent")
    row = await _row(harness, "doomed")
    assert row.status == "PREPARING"
    status, body = await harness.call("DELETE", "/kernel/doomed")
    assert status == 200, body
    status, body = await create
    assert status == 409 and body["type"].endswith("kernel-creation-cancelled"), body
    assert await _status(harness, "doomed") == ("TERMINATED", "user-requested")
    assert fake.destroyed == [str(row.id)] and not fake.creating and not fake.kernels
    # the owner still sees it by id; by token it is gone (no live session)
    status, body = await harness.call("GET", f"/kernel/{row.id}")
    assert status == 200 and body["status"] == "TERMINATED", body
    assert (await harness.call("GET", "/kernel/doomed"))[0] == 404
    assert (await harness.call("DELETE", "/kernel/doomed"))[0] == 404
    fake.hold_create = None
    assert (await harness.create("doomed"))[0] == 201  # the token is free again


async def test_destroy_during_create_twenty_times_leaks_nothing(harness: Any) -> None:
    fake = await harness.agent(cpu="64", mem=str(64 << 30))
    fake.hold_create = asyncio.Event()
    for i in range(20):
        create = asyncio.ensure_future(harness.create(f"race-{i}"))
        await wait_for(lambda: fake.creating, what="create on the agent")
        assert (await harness.call("DELETE", f"/kernel/race-{i}"))[0] == 200
        assert (await create)[0] == 409
    assert not fake.kernels and not fake.creating
    rows = await harness.sessions()
    assert {(r.status, r.status_info) for r in rows} == {("TERMINATED", "user-requested")}


async def test_requests_in_flight_fail_fast_when_the_agent_reconnects(harness: Any) -> None:
    fake = await harness.agent()
    assert (await harness.create("busy"))[0] == 201
    fake.hold_execute = asyncio.Event()
    execute = asyncio.ensure_future(harness.call("POST", "/kernel/busy", {"code": "1"}))
    await asyncio.sleep(0.3)
    started = time.monotonic()
    again = FakeAgent(fake.link.endpoint, harness.server_key, harness.token, fake.agent_id)
    again.kernels = set(fake.kernels)
    harness.agents.append(again)
    assert isinstance(await again.start(), JoinAccepted)  # a new connection: a new peer
    status, body = await execute
    assert status == 503 and body["type"].endswith("agent-unavailable"), body
    assert time.monotonic() - started < 2.0  # not the 5 s execute timeout
    fake.hold_execute.set()
    status, body = await harness.call("POST", "/kernel/busy", {"code": "2"})
    assert status == 200, body  # served through the new connection


async def test_create_in_flight_on_reconnect_is_adopted_not_destroyed(harness: Any) -> None:
    fake = await harness.agent()
    fake.hold_create = asyncio.Event()
    create = asyncio.ensure_future(harness.create("kept"))
    await wait_for(lambda: fake.creating, what="create on the agent")
    kernel_id = next(iter(fake.creating))
    again = FakeAgent(fake.link.endpoint, harness.server_key, harness.token, fake.agent_id)
    harness.agents.append(again)
    again.creating = dict(fake.creating)  # the same agent process, a new connection
    assert isinstance(await again.start(heartbeat=None), JoinAccepted)
    status, body = await create
    assert status == 503 and body["type"].endswith("agent-unavailable"), body
    assert await _status(harness, "kept") == ("PREPARING", "agent-link-lost")
    status, body = await harness.create("kept")  # the token does not hand it out yet
    assert status == 503 and body["type"].endswith("agent-unavailable"), body
    again.creating, again.kernels = {}, {kernel_id}  # the create finished on the agent
    await again.link.send(again.heartbeat())
    await wait_for(lambda: _is(harness, "kept", "RUNNING"), what="adoption")
    assert await _status(harness, "kept") == ("RUNNING", "recovered")
    assert fake.destroyed == [] and again.destroyed == []
    status, body = await harness.call("POST", "/kernel/kept", {"code": "1"})
    assert status == 200, body


async def _is(harness: Any, token: str, status: str) -> bool:
    return bool((await _row(harness, token)).status == status)


async def _stuck(harness: Any, status: str, agent_id: str | None, age: float,
                 token: str) -> uuid.UUID:
    """A session row left behind in ``status`` ``age`` seconds ago (a killed manager)."""
    kid = uuid.uuid4()
    async with harness.engine.begin() as conn:
        await conn.execute(sa.insert(kernels).values(
            id=kid, session_name=token, access_key=harness.access_key, lang="python",
            image="kraken/python:latest", agent_id=agent_id, status=status,
            slots={"cpu": "1", "mem": str(2**30)},
            status_changed=sa.func.now() - sa.func.make_interval(0, 0, 0, 0, 0, 0, age)))
        await conn.execute(sa.insert(kernel_events).values(
            kernel_id=kid, from_status=None, to_status=status, at=sa.func.now()))
    return kid


async def test_stuck_preparing_is_repaired_by_the_agent_report(harness: Any) -> None:
    fake = await harness.agent()
    fake.stop_heartbeats()
    alive = await _stuck(harness, "PREPARING", "agent-1", 3600, "alive")
    await _stuck(harness, "PREPARING", "agent-1", 3600, "dead")
    fake.kernels.add(str(alive))  # the agent created it; the manager died before RUNNING
    await fake.link.send(fake.heartbeat())
    await wait_for(lambda: _is(harness, "alive", "RUNNING"), what="adoption")
    await wait_for(lambda: _is(harness, "dead", "ERROR"), what="failure")
    assert await _status(harness, "dead") == ("ERROR", "creation-lost")
    status, body = await harness.call("POST", "/kernel/alive", {"code": "1"})
    assert status == 200, body
    assert (await harness.create("dead"))[0] == 201  # the token gives a usable session


async def test_sweep_settles_sessions_past_their_deadline(harness: Any) -> None:
    fake = await harness.agent()
    fake.stop_heartbeats()  # no report to judge by: the deadlines decide
    pending = await _stuck(harness, "PENDING", None, 3600, "p")
    scheduled = await _stuck(harness, "SCHEDULED", "agent-1", 3600, "s")
    preparing = await _stuck(harness, "PREPARING", "agent-1", 3600, "prep")
    terminating = await _stuck(harness, "TERMINATING", "agent-1", 3600, "t")
    fresh = await _stuck(harness, "PREPARING", "agent-1", 1, "fresh")
    harness.app[REGISTRY]._reports.clear()
    done = await harness.app[SWEEPER].sweep()
    moved = {t.kernel_id: (t.to_status.value, t.reason) for t in done}
    assert moved == {
        pending: ("CANCELLED", "pending-timeout"),
        scheduled: ("CANCELLED", "scheduling-timeout"),
        preparing: ("ERROR", "creation-timeout"),
        terminating: ("ERROR", "destroy-timeout"),
    }
    assert fresh not in moved
    await wait_for(lambda: {str(preparing), str(terminating)} <= set(fake.destroyed),
                   what="cleanup on the agent")
    assert await harness.app[SWEEPER].sweep() == []  # idempotent


async def test_capacity_is_the_stricter_of_db_and_agent_report(harness: Any) -> None:
    fake = await harness.agent(cpu="2", mem=str(4 << 30))
    fake.occupied = {"cpu": "2", "mem": str(4 << 30)}  # a leak the DB knows nothing of
    await asyncio.sleep(0.5)  # a heartbeat carries it
    status, body = await harness.call("POST", "/kernel/create", {
        "lang": "python", "clientSessionToken": "squeezed", "maxWaitSeconds": 0.3,
        "config": {"instanceCores": 1}})
    assert status == 503 and body["type"].endswith("session-queue-timeout"), body
    assert fake.created == []  # the agent was never asked to create what it would refuse
    fake.occupied = {}
    await asyncio.sleep(0.5)
    assert (await harness.create("fits", instanceCores=1))[0] == 201


async def test_create_while_the_agent_is_lost_is_503(harness: Any) -> None:
    fake = await harness.agent()
    await lose(harness.app, fake)
    status, body = await harness.create("meanwhile")
    assert status == 503 and body["type"].endswith("no-agent-available"), body
    assert (await harness.create("meanwhile", lang="no-such-lang"))[0] == 404


async def test_burst_of_creates_under_the_limit_all_succeed(harness: Any) -> None:
    await harness.agent(cpu="64", mem=str(64 << 30))
    results = await asyncio.gather(*(harness.create(f"burst-{i}") for i in range(5)))
    assert [code for code, _ in results] == [201] * 5, results


async def test_a_session_being_destroyed_does_not_count_toward_the_quota(harness: Any) -> None:
    await harness.agent(cpu="64", mem=str(64 << 30))
    for i in range(5):
        assert (await harness.create(f"quota-{i}"))[0] == 201
    assert (await harness.create("quota-over"))[0] == 412
    async with harness.engine.begin() as conn:  # its agent could not confirm the destroy
        await conn.execute(sa.update(kernels).where(kernels.c.session_name == "quota-0")
                           .values(status="TERMINATING"))
    status, body = await harness.create("quota-over")
    assert status == 201, body


async def test_an_agent_cannot_reconcile_another_agents_sessions(harness: Any) -> None:
    """A compromised agent reporting (or omitting) kernels of another agent changes
    nothing there: reconciliation only ever looks at the reporting agent's rows."""
    honest = await harness.agent("agent-1")
    assert (await harness.create("victim"))[0] == 201
    victim = await _row(harness, "victim")
    rogue = await harness.agent("agent-2")
    rogue.kernels = {str(victim.id)}  # claims to hold it, then to be creating it
    await rogue.link.send(rogue.heartbeat())
    rogue.kernels, rogue.creating = set(), {str(victim.id): asyncio.Event()}
    await rogue.link.send(rogue.heartbeat())
    await asyncio.sleep(1.0)  # past reconcile.settle
    await rogue.link.send(rogue.heartbeat())
    await wait_for(lambda: str(victim.id) in rogue.destroyed, what="rogue told to drop it")
    assert await _status(harness, "victim") == ("RUNNING", None)
    assert honest.destroyed == []
    status, body = await harness.call("POST", "/kernel/victim", {"code": "1"})
    assert status == 200, body
