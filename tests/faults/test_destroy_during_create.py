"""Scenario 3 (issue 8): destroy while creating, 20 times.

No container leaks; each create answers 409 ``kernel-creation-cancelled`` (or, when
the destroy came just after the create finished, succeeds); every destroy is
answered (never 404: the owner can always delete); sessions end TERMINATED.
"""
from __future__ import annotations

import asyncio
import random

import pytest

from tests.faults.client import Outcome, RecordingClient, tally
from tests.faults.cluster import FaultCluster
from tests.faults.invariants import Expectations

ROUNDS = 20
AT_ONCE = 4
CANCELLED = "kernel-creation-cancelled"


async def race(cluster: FaultCluster, client: RecordingClient, token: str,
               delay: float) -> tuple[Outcome, Outcome]:
    create = asyncio.ensure_future(client.create(token))
    await asyncio.to_thread(cluster.wait_session_status, token, ("PREPARING", "RUNNING"))
    await asyncio.sleep(delay)
    destroy = await client.destroy(token)
    return await create, destroy


@pytest.mark.timeout(300)
async def test_destroy_racing_create(cluster: FaultCluster, client: RecordingClient) -> None:
    expect = Expectations()
    rng = random.Random(8)
    results: list[tuple[str, Outcome, Outcome]] = []
    for start in range(0, ROUNDS, AT_ONCE):
        tokens = [f"race-{i}" for i in range(start, min(start + AT_ONCE, ROUNDS))]
        pairs = await asyncio.gather(*(race(cluster, client, t, rng.uniform(0, 0.3))
                                       for t in tokens))
        results += [(t, c, d) for t, (c, d) in zip(tokens, pairs, strict=True)]
    creates = [c for _, c, _ in results]
    destroys = [d for _, _, d in results]
    expect(all(c.ok or c.kind == CANCELLED for c in creates),
           f"creates must succeed or answer {CANCELLED}: {tally(creates)}")
    expect(any(c.kind == CANCELLED for c in creates),
           f"no create was cancelled in {ROUNDS} races: {tally(creates)}")
    expect(all(d.ok for d in destroys), f"destroys: {tally(destroys)}")
    expect.converged(cluster)
    statuses = {t: (cluster.session_row(t) or {}).get("status") for t, _, _ in results}
    expect(all(s == "TERMINATED" for s in statuses.values()),
           f"sessions not TERMINATED: { {t: s for t, s in statuses.items() if s != 'TERMINATED'} }")
    expect(not cluster.containers(), f"leaked containers: {cluster.containers()}")
    expect(not client.failures(), f"unanswered or 500 calls: {tally(client.failures())}")
    expect.verify()
