"""Scenario 5 (issue 8): requests in flight when their agent reconnects.

The agent is SIGKILLed and restarted during a long execute and during a create: both
calls must fail fast with a retryable 503 problem (well under their full timeouts),
and the manager must not destroy a container the restarted agent re-adopted.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable

import pytest

from tests.faults.client import Outcome, RecordingClient, tally
from tests.faults.cluster import AGENTS, CREATE_TIMEOUT, FaultCluster
from tests.faults.invariants import Expectations

FAST = 12.0  # seconds from the kill: a kill, a restart and a join, not a full timeout
LONG_RUN = "import time\ntime.sleep(100)\nprint('done')"


async def finished_at(call: Awaitable[Outcome]) -> tuple[Outcome, float]:
    out = await call
    return out, time.monotonic()


@pytest.mark.timeout(240)
async def test_inflight_requests_fail_fast(cluster: FaultCluster,
                                           client: RecordingClient) -> None:
    expect = Expectations()
    target, other = AGENTS
    await asyncio.to_thread(cluster.kill, other)  # every create now lands on the target
    await asyncio.to_thread(cluster.wait_until, lambda: cluster.agent_status(other) == "LOST",
                            30, f"{other} LOST")
    assert (await client.create("inflight-a")).ok
    execute = asyncio.ensure_future(finished_at(
        client.execute("inflight-a", LONG_RUN, timeout=110)))
    create = asyncio.ensure_future(finished_at(
        client.create("inflight-b", timeout=CREATE_TIMEOUT + 20)))
    await asyncio.to_thread(cluster.wait_session_status, "inflight-b", ("PREPARING", "RUNNING"))
    await asyncio.sleep(0.5)  # the execute is under way
    t_kill = time.monotonic()
    await asyncio.to_thread(cluster.restart, target, 9)
    (ex, ex_done), (cr, cr_done) = await execute, await create
    expect(ex.status == 503 and not ex.is_failure,
           f"the in-flight execute must answer 503 with a problem type: {ex}")
    expect(ex_done - t_kill < FAST,
           f"the in-flight execute answered {ex_done - t_kill:.1f} s after the kill")
    expect(cr.ok or (cr.status == 503 and not cr.is_failure),
           f"the in-flight create must succeed or answer 503: {cr}")
    expect(cr_done - t_kill < FAST,
           f"the in-flight create answered {cr_done - t_kill:.1f} s after the kill")
    if cr.ok:
        row = cluster.session_row("inflight-b")
        out = await client.execute("inflight-b", "print('adopted')")
        expect(out.ok, f"the created session was not kept: {out}, row {row}")
    await asyncio.to_thread(cluster.start_again, other)
    for token in ("inflight-a", "inflight-b"):
        await client.destroy(token)
    expect.converged(cluster)
    expect(not client.failures(), f"unanswered or 500 calls: {tally(client.failures())}")
    expect.verify()
