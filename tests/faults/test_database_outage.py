"""Scenario 1 (issue 8): PostgreSQL down ~10 s.

Running sessions survive and keep executing afterwards; during the outage clients get
503 with a problem type (not 500 ``internal-error``) and no call hangs.
"""
from __future__ import annotations

import asyncio
import time

import pytest

from tests.faults.client import Outcome, RecordingClient, stdout_of, tally
from tests.faults.cluster import HEARTBEAT_TIMEOUT, FaultCluster
from tests.faults.invariants import Expectations

OUTAGE = 10.0


async def _calls_during(client: RecordingClient, seconds: float, token: str,
                        other: str) -> list[Outcome]:
    during: list[Outcome] = []
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < seconds:
        during.append(await client.create(f"pg-new-{n}", timeout=20))
        during.append(await client.execute(token, "x", timeout=20))
        during.append(await client.info(other, timeout=20))
        n += 1
        await asyncio.sleep(0.5)
    return during


@pytest.mark.timeout(180)
async def test_postgres_outage_keeps_running_sessions(cluster: FaultCluster,
                                                      client: RecordingClient) -> None:
    expect = Expectations()
    tokens = ["pg-a", "pg-b"]
    for token in tokens:
        assert (await client.create(token)).ok
        assert (await client.execute(token, "x = 41")).ok
    await asyncio.to_thread(cluster.pg.stop)
    try:
        during = await _calls_during(client, OUTAGE, *tokens)
    finally:
        await asyncio.to_thread(cluster.pg.start)
    bad = [o for o in during if o.is_failure or (not o.ok and o.status != 503)]
    expect(not bad, f"during the outage only successes and 503 are expected: {tally(bad)}")
    expect(any(o.status == 503 for o in during if o.op == "create"),
           f"a create needs the database, it must answer 503: {tally(during)}")
    await asyncio.sleep(HEARTBEAT_TIMEOUT * 2)  # past the liveness checks after the outage
    expect.converged(cluster)
    for token in tokens:
        out = await client.execute(token, "print(x + 1)")
        expect(out.ok and stdout_of(out) == "42\n",
               f"session {token} did not survive: {out}, row {cluster.session_row(token)}")
        await client.destroy(token)
    expect(not client.failures(), f"unanswered or 500 calls: {tally(client.failures())}")
    expect.verify()
