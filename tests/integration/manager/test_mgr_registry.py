"""The agent link: join auth, heartbeat loss, re-join reconciliation, termination events."""
from __future__ import annotations

import asyncio
from typing import Any

import sqlalchemy as sa

from common.msg_agent import ErrorReply, Heartbeat, KernelTerminated
from manager.api.keys import REGISTRY
from manager.db.tables import agents


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
    agent = await harness.agent()
    assert (await harness.create("doomed"))[0] == 201
    agent.stop_heartbeats()
    registry = harness.app[REGISTRY]
    registry.config = registry.config.model_copy(update={"heartbeat_timeout": 0.5})
    await asyncio.sleep(1.0)
    await registry.check_liveness()  # the periodic task may have been first
    assert (await _agent_row(harness, "agent-1")).status == "LOST"
    (row,) = await harness.sessions()
    assert row.status == "ERROR" and row.status_info == "agent-lost"
    assert await registry.check_liveness() == []  # idempotent
    await agent.link.send(Heartbeat(agent_id="agent-1", available_slots=agent.slots,
                                    occupied_slots={}, kernels=[]))
    await asyncio.sleep(0.3)
    assert (await _agent_row(harness, "agent-1")).status == "ALIVE"


async def test_rejoin_reconciles_vanished_containers(harness: Any) -> None:
    agent = await harness.agent()
    assert (await harness.create("kept"))[0] == 201
    assert (await harness.create("lost"))[0] == 201
    rows = {r.session_name: r for r in await harness.sessions()}
    agent.kernels = {str(rows["kept"].id)}
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
