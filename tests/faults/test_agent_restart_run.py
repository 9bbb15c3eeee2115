"""Scenario 6 (issue 8): the agent restarts while a run is going inside the runner.

The run's output continues after the restart (re-attached) or the run is reported
as interrupted; either way the next execute works promptly and is not silently
queued behind the lost run.
"""
from __future__ import annotations

import asyncio
import time

import pytest

from tests.faults.client import Outcome, RecordingClient, stdout_of, tally
from tests.faults.cluster import FaultCluster
from tests.faults.invariants import Expectations

STEPS = 20
RUN = f"import time\nfor i in range({STEPS}):\n    print(i, flush=True)\n    time.sleep(1)\n"
PROMPT = 10.0  # seconds the next execute may take


async def continue_run(client: RecordingClient, token: str, first: Outcome,
                       limit: float) -> tuple[Outcome, str, bool]:
    """Continue a run until it finishes or a call fails (a 503 is retried); the last
    answer, all its stdout, and whether the agent said output may be missing."""
    out, text = first, stdout_of(first) if first.ok else ""
    noted = False
    deadline = time.monotonic() + limit
    run_id = first.body["result"]["runId"] if first.ok else ""
    while (out.status == 503 or out.ok and out.body["result"]["status"] == "continued") \
            and time.monotonic() < deadline:
        if out.status == 503:  # retryable (the agent is restarting): a client retries
            await asyncio.sleep(0.5)
        out = await client.call("continue", "POST", f"/kernel/{token}",
                                {"mode": "continue", "code": "", "runId": run_id}, timeout=30)
        text += stdout_of(out) if out.ok else ""
        noted = noted or (out.ok and "may be missing" in str(out.body["result"]["console"]))
    return out, text, noted


@pytest.mark.timeout(240)
async def test_run_survives_agent_restart(cluster: FaultCluster,
                                          client: RecordingClient) -> None:
    expect = Expectations()
    assert (await client.create("restart-run")).ok
    row = cluster.session_row("restart-run")
    assert row is not None
    agent = cluster.agent_name(row["agent_id"])
    first = await client.execute("restart-run", RUN)
    assert first.ok and first.body["result"]["status"] == "continued", first
    await asyncio.to_thread(cluster.restart, agent)  # SIGTERM, then start and join
    last, text, noted = await continue_run(client, "restart-run", first, STEPS + 30)
    if last.ok and last.body["result"]["status"] == "finished":  # re-attached
        lines = text.split()
        expect(lines == [str(i) for i in range(STEPS)] or noted,
               f"output lost silently across the agent restart: {text!r}")
        expect(lines == sorted(set(lines), key=int) and lines[-1:] == [str(STEPS - 1)],
               f"output duplicated, reordered or cut short across the restart: {text!r}")
    elif last.ok:
        expect("interrupt" in str(last.body["result"]),
               f"the run neither finished nor was reported interrupted: {last.body['result']}")
    else:
        expect(not last.is_failure and last.kind != "kernel-not-found",
               f"the run must be re-attached or reported interrupted: {last} {last.body}")
    t0 = time.monotonic()
    nxt = await client.execute("restart-run", "print('next')", timeout=PROMPT + 20)
    expect(nxt.ok and stdout_of(nxt) == "next\n", f"the next execute: {nxt}")
    expect(time.monotonic() - t0 < PROMPT,
           f"the next execute waited {time.monotonic() - t0:.1f} s behind the lost run")
    await client.destroy("restart-run")
    expect.converged(cluster)
    expect(not client.failures(), f"unanswered or 500 calls: {tally(client.failures())}")
    expect.verify()
