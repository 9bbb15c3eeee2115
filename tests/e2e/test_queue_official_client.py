"""The official client against a full cluster: `backend.ai run` waits in the queue
instead of failing with 503, and runs as soon as the session holding the room ends."""
from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.e2e.cluster import Cluster
from tests.e2e.conftest import CLIENT_VENV, PG_URL, REDIS_URL, Run

pytestmark = pytest.mark.e2e


class OneCoreCluster(Cluster):
    """An agent that offers one core: one default session fills it."""

    # this host has 2 cores: one reserved, no CPU overcommit
    agent_sections = "[resources]\nreserved_cpu = 1\ncpu_overcommit = 1"
    manager_sections = "[sessions]\ndefault_cpu = 1\n[scheduler]\nmax_wait = 120"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    c = OneCoreCluster(tmp_path_factory.mktemp("cluster"), PG_URL, REDIS_URL)
    try:
        await c.start()
        yield c
    finally:
        await c.stop()


def test_run_on_a_full_cluster_waits_then_runs(bai: Run, cluster: Cluster) -> None:
    first = bai("run", "-t", "e2e-holder", "python", "-c", "x = 1")  # kept: no --rm
    assert first.returncode == 0, first.stderr
    waiting = subprocess.Popen(
        [str(CLIENT_VENV / "bin" / "backend.ai"), "run", "--rm", "python", "-c",
         "print('ran after the queue')"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=cluster.client_env())
    try:
        cluster.wait(lambda: cluster.sql(
            "SELECT count(*) FROM kernels WHERE status = 'PENDING' AND queued_at IS NOT NULL"),
            60, "the second run queued")
        assert waiting.poll() is None  # still waiting, not a 503
        assert bai("terminate", "e2e-holder").returncode == 0
        out, err = waiting.communicate(timeout=120)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.communicate()
    assert waiting.returncode == 0, err
    assert "ran after the queue" in out.splitlines()
    assert cluster.containers() == []
