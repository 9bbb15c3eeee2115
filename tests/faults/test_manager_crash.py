"""Scenario 4 (issue 8): a manager SIGKILLed in the middle of a create, 5 times.

No session stays PREPARING past its deadline, no container is orphaned, and creating
with the same token afterwards gives a usable session or a clear error.
"""
from __future__ import annotations

import asyncio
import functools

import pytest

from tests.faults.client import RecordingClient, tally
from tests.faults.cluster import MANAGERS, FaultCluster
from tests.faults.invariants import DEADLINES, Expectations

ROUNDS = 5
EARLY = ("PENDING", "SCHEDULED", "PREPARING")


@pytest.mark.timeout(240)
async def test_manager_killed_mid_create(cluster: FaultCluster,
                                         client: RecordingClient) -> None:
    expect = Expectations()
    victim = MANAGERS[0]
    pinned = RecordingClient(client.http, cluster.endpoints[:1], cluster.access_key,
                             cluster.secret_key)
    tokens = [f"mkill-{i}" for i in range(ROUNDS)]
    for token in tokens:
        create = asyncio.ensure_future(pinned.create(token))
        await asyncio.to_thread(cluster.wait_session_status, token, ("PREPARING", "RUNNING"))
        await asyncio.to_thread(cluster.kill, victim)
        await create  # its answer is lost with the manager: that is allowed
        await asyncio.to_thread(cluster.start_again, victim)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINES["PREPARING"] + 10
    while loop.time() < deadline:
        rows = [cluster.session_row(t) for t in tokens]
        if all(r is None or r["status"] not in EARLY for r in rows):
            break
        await asyncio.sleep(1)
    rows = [cluster.session_row(t) for t in tokens]
    stuck = [r for r in rows if r is not None and r["status"] in EARLY]
    expect(not stuck, f"sessions stuck past their deadline: {stuck}")
    expect.converged(cluster)
    for token in tokens:
        again = await client.create(token)
        if again.ok:
            # the restarted replica may still be waiting for the agent to rejoin it: a
            # retryable 503 agent-unavailable, which a client retries
            out = await client.retry_503(functools.partial(client.execute, token,
                                                           "print('usable')"))
            expect(out.ok, f"create {token} returned an unusable session: {out}, "
                           f"row {cluster.session_row(token)}")
        else:
            expect(again.status >= 400 and not again.is_failure,
                   f"create {token} again: {again}")
        await client.destroy(token)
    expect.converged(cluster)
    expect(not client.failures(), f"unanswered or 500 calls: {tally(client.failures())}")
    expect.verify()

