"""Agent ids are unique among live agents: a second agent with a taken id is refused
(seed 002's 409 "This ID has already been registered"), a restarted one gets back in."""
from __future__ import annotations

import asyncio
from typing import Any

import sqlalchemy as sa

from common.msg_agent import ErrorReply, JoinAccepted
from manager.db.tables import agents
from tests.integration.manager.conftest import Harness, wait_for
from tests.integration.manager.test_replicas import pair  # noqa: F401  (fixture)


async def _holder(harness: Any) -> str:
    async with harness.engine.connect() as conn:
        return str((await conn.execute(sa.select(agents.c.instance_id).where(
            agents.c.id == "agent-1"))).scalar_one())


async def test_second_agent_with_a_live_id_is_refused(harness: Any) -> None:
    first = await harness.agent("agent-1", instance_id="first")
    assert (await harness.create("mine"))[0] == 201
    second = harness.fake_agent("agent-1", instance_id="second")
    reply = await second.start()
    assert isinstance(reply, ErrorReply), reply
    assert reply.error_type == "agent-id-conflict"
    assert "This ID has already been registered" in reply.detail
    assert "first" not in reply.detail  # the holder's instance id would let one pass for it
    # the first agent keeps its id and its session: requests still reach it
    (row,) = await harness.sessions()
    assert row.status == "RUNNING"
    status, body = await harness.call("POST", "/kernel/mine", {"code": "x"})
    assert status == 200 and body["result"]["console"] == [["stdout", "ran x\n"]], body
    assert await _holder(harness) == "first"
    assert str(row.id) in first.kernels and second.created == []


async def test_restarted_agent_rejoins_once_the_old_one_is_silent(harness: Any) -> None:
    old = await harness.agent("agent-1", instance_id="before-restart")
    assert (await harness.create("kept"))[0] == 201
    await old.close()  # killed: no more heartbeats, its connection gone
    new = harness.fake_agent("agent-1", instance_id="after-restart")
    new.kernels = set(old.kernels)  # the containers outlived the agent process
    new.link.start()

    async def joined() -> Any:
        reply = await new.join()
        return reply if isinstance(reply, JoinAccepted) else None

    reply = await wait_for(joined, timeout=10, what="the restarted agent's join")
    (row,) = await harness.sessions()
    assert reply.keep_kernels == [str(row.id)] and row.status == "RUNNING"
    assert await _holder(harness) == "after-restart"
    status, _ = await harness.call("POST", "/kernel/kept", {"code": "1"})
    assert status == 200


async def test_reconnect_of_the_same_instance_is_accepted(harness: Any) -> None:
    await harness.agent("agent-1", instance_id="same")
    assert (await harness.create("kept"))[0] == 201
    again = harness.fake_agent("agent-1", instance_id="same")
    (row,) = await harness.sessions()
    again.kernels = {str(row.id)}
    reply = await again.start()
    assert isinstance(reply, JoinAccepted) and reply.keep_kernels == [str(row.id)]
    status, _ = await harness.call("POST", "/kernel/kept", {"code": "1"})
    assert status == 200  # answered through the new connection


async def test_a_holder_on_another_replica_counts(
        pair: tuple[Harness, Harness]) -> None:  # noqa: F811  (the fixture)
    """Replica b never saw the first agent: the agents row tells it the id is held."""
    a, b = pair
    await a.agent("agent-1", instance_id="first")
    reply = await b.fake_agent("agent-1", instance_id="second").start()
    assert isinstance(reply, ErrorReply) and reply.error_type == "agent-id-conflict", reply
    assert await _holder(a) == "first"


async def test_simultaneous_first_joins_admit_one(harness: Any) -> None:
    fakes = [harness.fake_agent("agent-new", instance_id=f"inst-{i}") for i in range(4)]
    replies = await asyncio.gather(*(f.start() for f in fakes))
    accepted = [f.instance_id for f, r in zip(fakes, replies, strict=True)
                if isinstance(r, JoinAccepted)]
    assert len(accepted) == 1, replies
    async with harness.engine.connect() as conn:
        assert (await conn.execute(sa.select(agents.c.instance_id).where(
            agents.c.id == "agent-new"))).scalar_one() == accepted[0]
