"""Scenario 7 (issue 8): creates while every agent is LOST answer 503 (not 404
``image-not-found``), and leave nothing counted against the keypair's quota: a burst
of creates under the keypair limit afterwards gets no 412.
"""
from __future__ import annotations

import asyncio

import pytest

from tests.faults.client import RecordingClient, tally
from tests.faults.cluster import AGENTS, FaultCluster
from tests.faults.invariants import Expectations

LIMIT = 6


@pytest.mark.timeout(180)
async def test_creates_while_agents_lost(cluster: FaultCluster,
                                         client: RecordingClient) -> None:
    expect = Expectations()
    cluster.sql("UPDATE keypairs SET concurrency_limit = $1", LIMIT)
    for agent in AGENTS:
        await asyncio.to_thread(cluster.kill, agent)
    for agent in AGENTS:
        await asyncio.to_thread(cluster.wait_until,
                                lambda a=agent: cluster.agent_status(a) == "LOST",
                                30, f"{agent} LOST")
    lost = [await client.create(f"lost-{i}", timeout=30) for i in range(LIMIT)]
    expect(all(o.status == 503 and not o.is_failure for o in lost),
           f"creates while every agent is LOST must answer 503: {tally(lost)}")
    for agent in AGENTS:
        await asyncio.to_thread(cluster.start_again, agent)
    burst = await asyncio.gather(*(client.create(f"burst-{i}") for i in range(LIMIT)))
    expect(all(o.ok for o in burst), f"a burst of {LIMIT} creates under a limit of {LIMIT}: "
                                     f"{tally(list(burst))}")
    for i in range(LIMIT):
        await client.destroy(f"burst-{i}")
    expect.converged(cluster)
    expect(not client.failures(), f"unanswered or 500 calls: {tally(client.failures())}")
    expect.verify()
