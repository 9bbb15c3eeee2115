"""Fault soak: N faults injected at random while clients create, execute and destroy.

    var/venv/bin/python -m bench.fault_soak [--faults 100] [--seed S]

Starts its own cluster (tests/faults: a private PostgreSQL and Redis, two managers,
two agents, real Docker; root is needed to run PostgreSQL as `postgres`), so the dev
cluster is not touched. Each fault (SIGKILL, SIGSTOP or restart of a manager or an
agent, PostgreSQL or Redis down, a runner hung, destroy racing create) is injected and
ended; then the clients pause between cycles and the invariants of tests/faults are
awaited. Prints faults survived (converged), leaked containers, stuck sessions, client
errors by problem type and the time to converge after each fault (p50/max).
Target (issue 8): 100 faults, 0 leaks, 0 stuck, converged within 15 s.
"""
from __future__ import annotations

import argparse
import asyncio
import secrets
import shutil
import tempfile
import time
from pathlib import Path

import aiohttp

from tests.faults.chaos import run_chaos
from tests.faults.client import RecordingClient
from tests.faults.cluster import FaultCluster


async def main(faults: int, seed: int, converge_limit: float, keep_logs: str) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="kraken-soak-"))
    cluster = FaultCluster(workdir)
    try:
        await cluster.start()
        print(f"cluster up; {faults} faults, seed {seed}", flush=True)
        t0 = time.monotonic()
        async with aiohttp.ClientSession() as http:
            client = RecordingClient(http, cluster.endpoints, cluster.access_key,
                                     cluster.secret_key)
            report = await run_chaos(cluster, client, faults, seed, converge_limit,
                                     log=lambda line: print(line, flush=True))
        print(f"\n{faults} faults in {time.monotonic() - t0:.0f} s (seed {seed})")
        print("\n".join(report.lines()))
    finally:
        await cluster.stop()
        if keep_logs:
            shutil.copytree(workdir, keep_logs, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("keys", "scratch-*", "vfolders"))
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faults", type=int, default=100)
    ap.add_argument("--seed", type=int, default=secrets.randbelow(10**6))
    ap.add_argument("--converge-limit", type=float, default=60,
                    help="seconds after which a fault counts as not survived")
    ap.add_argument("--keep-logs", default="", help="a folder for the daemons' logs")
    args = ap.parse_args()
    asyncio.run(main(args.faults, args.seed, args.converge_limit, args.keep_logs))
