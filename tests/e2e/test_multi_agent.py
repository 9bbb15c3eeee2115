"""Two agents on this host (distinct ids and scratch roots), each small enough that
best-fit placement must use both: sessions land on both, run there, report live stats,
and the official client destroys them on both."""
from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from agent.resources import host_memory
from tests.e2e.cluster import Cluster
from tests.e2e.conftest import PG_URL, REDIS_URL, Run

pytestmark = pytest.mark.e2e

GIB = 2**30
AGENT_MEM = GIB + GIB // 2  # room for one default (1 GiB) session per agent


class SmallAgents(Cluster):
    agent_sections = (f"[resources]\nreserved_mem = {host_memory() - AGENT_MEM}\n"
                      "[stats]\ninterval = 1.0\n")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    c = SmallAgents(tmp_path_factory.mktemp("cluster"), PG_URL, REDIS_URL, agents=2)
    try:
        await c.start()
        yield c
    finally:
        await c.stop()


def _placed_on(cluster: Cluster, token: str) -> str:
    return str(cluster.sql("SELECT agent_id FROM kernels WHERE session_name = $1 AND "
                           "status = 'RUNNING'", token))


def _wait(probe, limit: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_sessions_spread_over_both_agents_and_die_on_both(bai: Run, cluster: Cluster) -> None:
    assert sorted(cluster.agent_ids.values()) == [cluster.agent_id, f"{cluster.agent_id}-1"]
    for token in ("multi-a", "multi-b"):
        out = bai("run", "-t", token, "python", "-c", f"print('{token} ran')")
        assert out.returncode == 0, out.stderr
        assert f"{token} ran" in out.stdout
    placed = {_placed_on(cluster, t) for t in ("multi-a", "multi-b")}
    assert placed == set(cluster.agent_ids.values())  # best fit had to use both
    for agent_id in placed:
        assert len(cluster.containers(agent_id)) == 1
    again = bai("run", "-t", "multi-b", "python", "-c", "print('still here')")
    assert again.returncode == 0 and "still here" in again.stdout, again.stderr
    # live stats reach the manager while the sessions run (agents send every second)
    _wait(lambda: cluster.sql("SELECT count(*) FROM kernels WHERE status = 'RUNNING' AND "
                              "(last_stat ->> 'mem_cur_bytes')::bigint > 0") == 2,
          30, "live stats of both sessions")
    for token in ("multi-a", "multi-b"):
        done = bai("terminate", token)
        assert done.returncode == 0, done.stderr
    assert cluster.containers() == []
    assert cluster.sql("SELECT count(*) FROM kernels WHERE status = 'TERMINATED'") == 2
