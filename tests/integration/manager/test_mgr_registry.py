"""The agent link: join auth, heartbeat loss, re-join reconciliation, termination events."""
from __future__ import annotations

import asyncio
from typing import Any

import sqlalchemy as sa

from common.msg_agent import ErrorReply, Heartbeat, KernelTerminated
from manager.api.keys import REGISTRY
from manager.db.tables import agents
from tests.integration.manager.conftest import lose, wait_for


async def _agent_row(harness: Any, agent_id: str) -> Any:
    async with harness.engine.connect() as conn:
        return (await conn.execute(sa.select(agents).where(agents.c.id == agent_id))).one()


async def test_bad_join_token_is_refused(harness: Any, caplog: Any) -> None:
    fake = harness.fake_agent("intruder")
    reply = await fake.start(token="wrong-token")
    assert isinstance(reply, ErrorReply) and reply.error_type == "unauthorized"
    assert "wrong-token" not in caplog.text
    async with harness.engine.connect() as conn:
        assert (await conn.execute(sa.select(agents))).all() == []


async def test_heartbeat_timeout_marks_agent_lost(harness: Any) -> None:
    """Silent → LOST, but its sessions wait (503 agent-unavailable) for the grace;
    a heartbeat brings it back with its sessions intact."""
    agent = await harness.agent()
    assert (await harness.create("doomed"))[0] == 201
    await lose(harness.app, agent)
    registry = harness.app[REGISTRY]
    (row,) = await harness.sessions()
    assert row.status == "RUNNING"
    status, body = await harness.call("POST", "/kernel/doomed", {"code": "1"})
    assert status == 503 and body["type"].endswith("agent-unavailable"), body
    assert await registry.check_liveness() == []  # idempotent
    await agent.link.send(agent.heartbeat())
    await wait_for(lambda: registry.hears("agent-1"))
    await wait_for(lambda: _is_alive(harness), what="ALIVE")
    status, body = await harness.call("POST", "/kernel/doomed", {"code": "1"})
    assert status == 200, body


async def _is_alive(harness: Any) -> bool:
    return bool((await _agent_row(harness, "agent-1")).status == "ALIVE")


async def test_lost_past_grace_errors_sessions_and_return_destroys(harness: Any) -> None:
    agent = await harness.agent()
    assert (await harness.create("doomed"))[0] == 201
    await lose(harness.app, agent, grace=0.01)
    (row,) = await harness.sessions()
    assert (row.status, row.status_info) == ("ERROR", "agent-lost")
    await agent.link.send(agent.heartbeat())  # it comes back after the grace
    await wait_for(lambda: str(row.id) in agent.destroyed, what="destroy of the leftover")
    assert agent.kernels == set()


async def test_rejoin_reconciles_vanished_containers(harness: Any) -> None:
    agent = await harness.agent()
    assert (await harness.create("kept"))[0] == 201
    assert (await harness.create("lost"))[0] == 201
    rows = {r.session_name: r for r in await harness.sessions()}
    agent.kernels = {str(rows["kept"].id)}
    await asyncio.sleep(0.6)  # past reconcile.settle: no create reply can be on its way
    reply = await agent.join()
    assert reply.keep_kernels == [str(rows["kept"].id)]
    rows = {r.session_name: r for r in await harness.sessions()}
    assert rows["kept"].status == "RUNNING"
    assert (rows["lost"].status, rows["lost"].status_info) == ("TERMINATED", "container-vanished")
    first = await _agent_row(harness, "agent-1")
    assert first.status == "ALIVE"


async def test_unjoined_heartbeat_gets_rejoin(harness: Any) -> None:
    fake = harness.fake_agent("stranger")
    fake.link.start()
    await fake.link.send(Heartbeat(agent_id="stranger", available_slots={}, occupied_slots={},
                                   kernels=[]))
    for _ in range(50):
        if fake.rejoins:
            break
        await asyncio.sleep(0.05)
    assert fake.rejoins == 1


async def test_kernel_terminated_event(harness: Any) -> None:
    agent = await harness.agent()
    assert (await harness.create("oom-1"))[0] == 201
    assert (await harness.create("exit"))[0] == 201
    rows = {r.session_name: r for r in await harness.sessions()}
    await agent.link.send(KernelTerminated(kernel_id=str(rows["oom-1"].id), reason="oom-killed"))
    await agent.link.send(KernelTerminated(kernel_id=str(rows["exit"].id), reason="self-exited",
                                           exit_code=0))
    await agent.link.send(KernelTerminated(kernel_id=str(rows["exit"].id), reason="again"))
    await asyncio.sleep(0.5)
    rows = {r.session_name: r for r in await harness.sessions()}
    assert (rows["oom-1"].status, rows["oom-1"].status_info) == ("ERROR", "oom-killed")
    assert (rows["exit"].status, rows["exit"].status_info) == ("TERMINATED", "self-exited")
    assert (await harness.call("POST", "/kernel/exit", {"code": "1"}))[0] == 404
