"""Scenario 8 (issue 8): a hung runner (SIGSTOP inside its container) is detected.

The agent destroys the unresponsive kernel and the session ends with the reason
``runner-unresponsive``; an execute sent to it is answered (no hang to its timeout);
nothing leaks.
"""
from __future__ import annotations

import asyncio

import pytest

from tests.faults.client import RecordingClient, tally
from tests.faults.cluster import FaultCluster
from tests.faults.invariants import Expectations

DETECT = 60.0  # seconds the agent may take to notice


@pytest.mark.timeout(240)
async def test_hung_runner_is_detected(cluster: FaultCluster, client: RecordingClient) -> None:
    expect = Expectations()
    assert (await client.create("hung")).ok
    row = cluster.session_row("hung")
    assert row is not None
    pids = await asyncio.to_thread(cluster.pause_runner, str(row["id"]))
    assert pids, "no runner process found in the container"
    try:
        out = await client.execute("hung", "print(1)", timeout=DETECT)
        expect(not out.is_failure, f"an execute on a hung runner must be answered: {out}")
        final = await asyncio.to_thread(cluster.wait_session_status, "hung",
                                        ("TERMINATED", "ERROR"), DETECT)
        after = cluster.session_row("hung")
        expect(final is not None and "runner-unresponsive" in str(after),
               f"the hung runner was not detected within {DETECT:.0f} s: {after}")
    finally:
        cluster.resume_pids(pids)
    await client.destroy("hung")
    expect.converged(cluster)
    expect(not client.failures(), f"unanswered or 500 calls: {tally(client.failures())}")
    expect.verify()
