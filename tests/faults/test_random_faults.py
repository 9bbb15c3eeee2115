"""A seeded random sequence of the suite's faults while clients create, execute and
destroy; the invariants are awaited after each fault.

KRAKEN_FAULTS_SEED replays a sequence (the seed is printed); KRAKEN_FAULTS_RANDOM sets
how many faults (default 6; bench/fault_soak.py runs a hundred).
"""
from __future__ import annotations

import os
import secrets

import pytest

from tests.faults.chaos import run_chaos
from tests.faults.client import RecordingClient
from tests.faults.cluster import FaultCluster
from tests.faults.invariants import Expectations

COUNT = int(os.environ.get("KRAKEN_FAULTS_RANDOM", "6"))
SEED = int(os.environ.get("KRAKEN_FAULTS_SEED", str(secrets.randbelow(10**6))))


@pytest.mark.timeout(120 + 60 * COUNT)
async def test_random_fault_sequence(cluster: FaultCluster, client: RecordingClient) -> None:
    print(f"\nrandom fault sequence: KRAKEN_FAULTS_SEED={SEED} KRAKEN_FAULTS_RANDOM={COUNT}")
    report = await run_chaos(cluster, client, COUNT, SEED, converge_limit=30)
    print("\n".join(report.lines()))
    expect = Expectations()
    expect(report.survived == COUNT, f"faults not converged (seed {SEED}): "
                                     f"{[f for f in report.faults if f[1] is None]}")
    expect(not report.leaked, f"leaked containers: {report.leaked}")
    expect(not report.stuck, f"stuck sessions: {report.stuck}")
    failures = [o for o in report.outcomes if o.is_failure]
    expect(not failures, f"unanswered or 500 calls (seed {SEED}): {failures}")
    expect.verify()
