"""Agent groups, resource presets and keypair resource policies at create (issue 10):
what a user notices — where a session runs, its size, and which creates are refused
with which message — through the signed API against fake agents."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa

from common.msg_agent import ErrorReply, JoinAccepted
from manager.api.keys import SWEEPER
from manager.db.tables import agents, kernels
from tests.integration.manager import cluster_rows
from tests.integration.manager.conftest import Harness, wait_for

GIB = 2**30
BIG = {"cpu": "64", "mem": str(64 * GIB)}


@pytest.fixture(autouse=True)
async def _clean(harness: Harness) -> AsyncIterator[None]:
    await cluster_rows.reset(harness.engine)
    yield
    await cluster_rows.reset(harness.engine)


async def _row(h: Harness, token: str) -> Any:
    return next(r for r in await h.sessions() if r.session_name == token)


async def test_presets_are_listed_and_size_a_session(harness: Harness) -> None:
    fake = await harness.agent(**BIG)
    status, body = await harness.call("GET", "/resource/presets")
    assert status == 200
    presets = {p["name"]: p["resource_slots"] for p in body["presets"]}
    assert sorted(presets) == ["large", "micro", "small", "xlarge"]
    assert presets["small"] == {"cpu": "1", "mem": str(GIB)}

    assert (await harness.create("by-preset", resourcePreset="large"))[0] == 201
    assert fake.created[-1].slots == {"cpu": "4", "mem": str(8 * GIB)}
    # an explicit amount wins over the preset's, slot by slot
    assert (await harness.create("mixed", resourcePreset="large", instanceCores=2))[0] == 201
    assert fake.created[-1].slots == {"cpu": "2", "mem": str(8 * GIB)}

    status, body = await harness.create("nope", resourcePreset="huge")
    assert status == 400 and "no resource preset named 'huge'" in body["detail"]
    status, body = await harness.create("bad-name", resourcePreset="a b")
    assert status == 400 and "resourcePreset" in body["detail"]


async def test_a_create_runs_in_an_allowed_group_only(harness: Harness) -> None:
    await cluster_rows.add_group(harness.engine, "gpu")
    await cluster_rows.add_group(harness.engine, "off", is_active=False)
    plain = await harness.agent("agent-plain", **BIG)
    gpu = await harness.agent("agent-gpu", group="gpu", **BIG)
    async with harness.engine.connect() as conn:
        groups = dict((await conn.execute(sa.select(agents.c.id, agents.c.scaling_group)))
                      .all())
    assert groups == {"agent-plain": "default", "agent-gpu": "gpu"}

    # the default policy allows the default group only
    status, body = await harness.create("in-gpu", scalingGroup="gpu")
    assert status == 403
    assert body["detail"] == ("resource policy 'default' does not allow agent group 'gpu' "
                              "(allowed: default)")
    assert (await harness.create("anywhere"))[0] == 201
    assert plain.created[-1].session_name == "anywhere" and not gpu.created

    await cluster_rows.give_policy(harness.engine, harness.access_key, "both",
                                   allowed_groups=["gpu", "default", "off"])
    status, body = await harness.call("GET", "/scaling-groups")
    assert status == 200 and body == {"scaling_groups": [{"name": "gpu"}, {"name": "default"}]}
    assert (await harness.create("first-allowed"))[0] == 201  # no group: the first allowed
    assert (await harness.create("named", scalingGroup="default"))[0] == 201
    assert [k.session_name for k in gpu.created] == ["first-allowed"]
    assert plain.created[-1].session_name == "named"
    assert (await _row(harness, "first-allowed")).scaling_group == "gpu"
    assert (await _row(harness, "named")).scaling_group == "default"

    status, body = await harness.create("inactive", scalingGroup="off")
    assert status == 400 and "'off' does not exist or is not active" in body["detail"]
    # a group with no agent holding the image: 503, never an agent of another group
    await cluster_rows.add_group(harness.engine, "empty")
    await cluster_rows.give_policy(harness.engine, harness.access_key, "both",
                                   allowed_groups=["empty"])
    status, body = await harness.create("nowhere")
    assert status == 503 and "agent group 'empty'" in body["detail"]
    assert len(plain.created) == 2 and len(gpu.created) == 1


async def test_a_full_group_does_not_spill_into_another(harness: Harness) -> None:
    await cluster_rows.add_group(harness.engine, "small")
    await harness.agent("agent-small", group="small", cpu="1", mem=str(2 * GIB))
    roomy = await harness.agent("agent-roomy", **BIG)
    await cluster_rows.give_policy(harness.engine, harness.access_key, "small-only",
                                   allowed_groups=["small"])
    assert (await harness.create("first", instanceCores=1))[0] == 201
    status, _ = await harness.create("second", instanceCores=1)
    assert status == 503 and not roomy.created


async def test_agent_with_a_bad_group_name_cannot_join(harness: Harness) -> None:
    for i, bad in enumerate(("no spaces", "x" * 65, 7)):
        fake = harness.fake_agent(f"agent-bad-{i}", group=bad)  # type: ignore[arg-type]
        reply = await fake.start()
        assert isinstance(reply, ErrorReply) and reply.error_type == "invalid-api-params"
    async with harness.engine.connect() as conn:
        assert not (await conn.execute(sa.select(agents.c.id))).all()
    ok = harness.fake_agent("agent-ok", group="later")  # a group not created yet is kept
    assert isinstance(await ok.start(), JoinAccepted)


async def test_max_concurrent_sessions_holds_under_concurrent_creates(harness: Harness
                                                                      ) -> None:
    await harness.agent(**BIG)
    await cluster_rows.give_policy(harness.engine, harness.access_key, "three",
                                   max_concurrent_sessions=3)
    results = await asyncio.gather(*(harness.create(f"race-{i}") for i in range(8)))
    codes = sorted(code for code, _ in results)
    assert codes.count(201) == 3 and codes.count(412) == 5, codes
    refused = next(body for code, body in results if code == 412)
    assert refused["detail"] == ("resource policy 'three' allows at most 3 concurrent "
                                 "sessions (3 live)")
    live = [r for r in await harness.sessions() if r.status == "RUNNING"]
    assert (await harness.call("DELETE", f"/kernel/{live[0].session_name}"))[0] == 200
    assert (await harness.create("after"))[0] == 201


async def test_total_slots_hold_under_concurrent_creates(harness: Harness) -> None:
    await harness.agent(**BIG)
    await cluster_rows.give_policy(harness.engine, harness.access_key, "three-cores",
                                   total_resource_slots={"cpu": "3"})
    results = await asyncio.gather(*(harness.create(f"race-{i}", instanceCores=1)
                                     for i in range(6)))
    codes = sorted(code for code, _ in results)
    assert codes.count(201) == 3 and codes.count(412) == 3, codes
    status, body = await harness.create("half", instanceCores=0.5)
    assert status == 412
    assert body["detail"] == ("resource policy 'three-cores' allows at most cpu=3 in total "
                              "across live sessions; 3 held, 0.5 asked")
    live = [r for r in await harness.sessions() if r.status == "RUNNING"]
    assert (await harness.call("DELETE", f"/kernel/{live[0].session_name}"))[0] == 200
    assert (await harness.create("after", instanceCores=1))[0] == 201


async def test_policy_idle_timeout_reaches_the_agent(harness: Harness) -> None:
    fake = await harness.agent(**BIG)
    assert (await harness.create("no-policy-timeout"))[0] == 201
    assert fake.created[-1].idle_timeout is None  # the test config reaps nothing
    await cluster_rows.give_policy(harness.engine, harness.access_key, "idle",
                                   idle_timeout=120)
    assert (await harness.create("reaped"))[0] == 201
    assert fake.created[-1].idle_timeout == 120.0


async def test_the_sweep_ends_sessions_past_their_lifetime(harness: Harness) -> None:
    fake = await harness.agent(**BIG)
    await cluster_rows.give_policy(harness.engine, harness.access_key, "short",
                                   max_session_lifetime=60)
    other = await harness.keypair()
    assert (await harness.create("old-one"))[0] == 201
    assert (await harness.create("young"))[0] == 201
    assert (await harness.create("unlimited", keys=other))[0] == 201
    async with harness.engine.begin() as conn:  # as if created 2 minutes ago
        await conn.execute(sa.update(kernels).where(kernels.c.session_name.in_(
            ["old-one", "unlimited"])).values(created_at=sa.func.now() - sa.text(
                "interval '120 seconds'")))
    await harness.app[SWEEPER].sweep()
    old = await _row(harness, "old-one")
    assert old.status in ("TERMINATING", "TERMINATED")
    assert old.status_info == "lifetime-exceeded"
    await wait_for(lambda: str(old.id) in fake.destroyed, what="destroy of 'old'")
    ended = await wait_for(lambda: _ended(harness, "old-one"), what="old TERMINATED")
    assert ended.status_info == "lifetime-exceeded"
    assert (await _row(harness, "young")).status == "RUNNING"
    assert (await _row(harness, "unlimited")).status == "RUNNING"  # the default policy


async def _ended(h: Harness, token: str) -> Any:
    row = await _row(h, token)
    return row if row.status == "TERMINATED" else None
