"""Keypair concurrency: no race admits a sixth session, and every way a session ends
frees its slot (destroy, crash, OOM, agent lost, idle timeout, failed create)."""
from __future__ import annotations

import asyncio
from typing import Any

import sqlalchemy as sa

from common.msg_agent import KernelTerminated
from manager.api.keys import CONFIG
from manager.db.tables import kernels
from tests.integration.manager.conftest import lose


async def _live(harness: Any) -> int:
    rows = await harness.sessions()
    return sum(1 for r in rows if r.status in ("PENDING", "SCHEDULED", "PREPARING", "RUNNING",
                                               "RESTARTING", "TERMINATING"))


async def _row(harness: Any, token: str) -> Any:
    return next(r for r in sorted(await harness.sessions(), key=lambda r: r.created_at)[::-1]
                if r.session_name == token)


async def _wait_status(harness: Any, token: str, status: str) -> Any:
    for _ in range(100):
        row = await _row(harness, token)
        if row.status == status:
            return row
        await asyncio.sleep(0.05)
    raise AssertionError(f"{token} stayed {row.status}")


async def test_concurrent_creates_admit_exactly_five(harness: Any) -> None:
    await harness.agent(cpu="64", mem=str(64 << 30))
    results = await asyncio.gather(*(harness.create(f"race-{i}") for i in range(12)))
    codes = sorted(code for code, _ in results)
    assert codes.count(201) == 5 and codes.count(412) == 7, codes
    assert await _live(harness) == 5


async def test_every_ending_releases_the_slot(harness: Any) -> None:
    harness.app[CONFIG].sessions.idle_timeout = 30.0
    fake = await harness.agent(cpu="64", mem=str(64 << 30))
    for i in range(5):
        assert (await harness.create(f"sess-{i}"))[0] == 201
    assert fake.created[0].idle_timeout == 30.0  # the agent is told the idle timeout
    assert (await harness.create("sess-over"))[0] == 412

    async def ends(how: Any, token: str, status: str, reason: str) -> None:
        await how()
        row = await _wait_status(harness, token, status)
        assert row.status_info == reason, row.status_info
        code, body = await harness.create(f"after-{token}")
        assert code == 201, body

    async def terminated(token: str, reason: str) -> None:
        row = await _row(harness, token)
        await fake.link.send(KernelTerminated(kernel_id=str(row.id), reason=reason))

    await ends(lambda: harness.call("DELETE", "/kernel/sess-0"), "sess-0", "TERMINATED",
               "user-requested")
    await ends(lambda: terminated("sess-1", "self-terminated"), "sess-1", "TERMINATED",
               "self-terminated")
    await ends(lambda: terminated("sess-2", "oom-killed"), "sess-2", "ERROR", "oom-killed")
    await ends(lambda: terminated("sess-3", "idle-timeout"), "sess-3", "TERMINATED",
               "idle-timeout")
    assert (await harness.create("sess-over"))[0] == 412
    assert (await harness.call("DELETE", "/kernel/sess-4"))[0] == 200
    fake.fail_create = "boom"
    assert (await harness.create("fails"))[0] >= 500
    assert (await _row(harness, "fails")).status == "ERROR"
    fake.fail_create = None
    assert (await harness.create("after-fail"))[0] == 201  # the failed one holds nothing
    assert await _live(harness) == 5


async def test_agent_lost_releases_its_sessions(harness: Any) -> None:
    fake = await harness.agent(cpu="64", mem=str(64 << 30))
    for i in range(5):
        assert (await harness.create(f"lost-{i}"))[0] == 201
    await lose(harness.app, fake, grace=0.01)
    async with harness.engine.connect() as conn:
        reasons = (await conn.execute(sa.select(kernels.c.status_info))).scalars().all()
    assert reasons == ["agent-lost"] * 5
    assert await _live(harness) == 0
