"""Fixtures of the fault-injection suite: one cluster for the whole suite, healed and
emptied after every test so each scenario starts from a healthy cluster.

Needs root (PostgreSQL runs as the ``postgres`` user), Docker and the kraken/python
image; under KRAKEN_NO_SKIP=1 a missing piece fails instead of skipping.
KRAKEN_FAULTS_KEEP_LOGS=<folder> keeps the daemons' logs and configs there.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from tests.faults.client import RecordingClient
from tests.faults.cluster import FaultCluster

pytestmark = pytest.mark.e2e


def _missing() -> str:
    if os.geteuid() != 0:
        return "the fault suite runs PostgreSQL as the postgres user: run it as root"
    if shutil.which("redis-server") is None or not Path("/usr/lib/postgresql").exists():
        return "redis-server and PostgreSQL binaries are needed (scripts/dev install)"
    image = subprocess.run(["docker", "image", "inspect", "kraken/python:latest"],
                           capture_output=True)
    if image.returncode != 0:
        return "Docker with the kraken/python image is needed (scripts/dev images)"
    return ""


@pytest.fixture(scope="session")
def fault_cluster() -> Iterator[FaultCluster]:
    why = _missing()
    if why:
        pytest.skip(why)
    workdir = Path(tempfile.mkdtemp(prefix="kraken-faults-"))
    cluster = FaultCluster(workdir)
    try:
        asyncio.run(cluster.start())
        yield cluster
    except BaseException:
        for name in cluster.procs:
            print(f"---- {name}.log ----\n{cluster.log_tail(name)}")
        raise
    finally:
        asyncio.run(cluster.stop())
        keep = os.environ.get("KRAKEN_FAULTS_KEEP_LOGS")  # a folder for the daemons' logs
        if keep:
            shutil.copytree(workdir, keep, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("keys", "scratch-*", "vfolders"))
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def cluster(fault_cluster: FaultCluster, request: pytest.FixtureRequest) -> Iterator[FaultCluster]:
    t0 = time.monotonic()
    yield fault_cluster
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        for name in fault_cluster.procs:
            print(f"---- {name}.log ----\n{fault_cluster.log_tail(name, 2500)}")
    reset(fault_cluster)
    print(f"\n{request.node.name}: {time.monotonic() - t0:.1f} s")


def reset(cluster: FaultCluster) -> None:
    """Heal every fault and remove what a (failed) scenario left, so the next starts clean."""
    cluster.heal()
    cluster.sql("UPDATE keypairs SET concurrency_limit = 40")
    left = cluster.containers()
    if left:
        subprocess.run(["docker", "rm", "-f", *left], capture_output=True, timeout=120)
    cluster.sql("UPDATE kernels SET status = 'TERMINATED', status_info = 'fault-suite-reset', "
                "terminated_at = now() WHERE status NOT IN ('TERMINATED', 'ERROR', 'CANCELLED')")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest_asyncio.fixture
async def client(cluster: FaultCluster) -> AsyncIterator[RecordingClient]:
    async with aiohttp.ClientSession() as http:
        yield RecordingClient(http, cluster.endpoints, cluster.access_key, cluster.secret_key)
