"""A heavy but allowed admin query does not hold the event loop: other requests are
answered while it runs (list items are completed a slice per event-loop turn)."""
from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import sqlalchemy as sa

from manager.db.tables import kernels
from tests.integration.graphql.conftest import gql
from tests.integration.graphql.test_gql_cost import SESSION_FIELDS
from tests.integration.manager.conftest import Harness

HEAVY = f"{{ keypairs {{ compute_sessions {{ {SESSION_FIELDS} }} }} }}"


async def _seed(h: Harness, keypairs: int, sessions: int) -> None:
    now = datetime.now(UTC)
    rows = []
    for k in range(keypairs):
        key, _ = await h.keypair(user_id=f"user{k}")
        rows += [{"id": uuid.uuid4(), "session_name": f"s{k}-{i}", "access_key": key,
                  "lang": "python", "image": "kraken/python:latest", "status": "RUNNING",
                  "created_at": now, "status_changed": now,
                  "slots": {"cpu": "1", "mem": str(2**30)},
                  "last_stat": {"cpu_used": i, "mem_cur_bytes": 2**30}}
                 for i in range(sessions)]
    async with h.engine.begin() as conn:
        await conn.execute(sa.insert(kernels), rows)


async def _probe(h: Harness, stop: asyncio.Event) -> list[float]:
    """Another user's small signed request, again and again (counted against that
    keypair, not the machine-wide per-IP bucket of the shared Redis); returns the
    moments each answer arrived."""
    answered = []
    while not stop.is_set():
        status, _ = await h.call("GET", "/kernel/no-such-session")
        assert status == 404
        answered.append(time.perf_counter())
    return answered


async def _ticker(stop: asyncio.Event) -> float:
    """The most CPU time the event loop's thread spent without running this task: the
    longest stretch of work that did not yield (CPU time, not wall time, so a loaded
    machine descheduling the process does not count as a block)."""
    longest, last = 0.0, time.thread_time()
    while not stop.is_set():
        await asyncio.sleep(0.001)
        now = time.thread_time()
        longest, last = max(longest, now - last), now
    return longest


async def test_gql_heavy_allowed_query_lets_others_run(harness: Harness) -> None:
    h = harness
    admin = await h.keypair(is_admin=True)
    await _seed(h, 50, 50)  # what the cost estimate assumes: 50 per list
    status, _ = await gql(h, HEAVY, keys=admin)  # warm up
    assert status == 200
    stop = asyncio.Event()
    probe = asyncio.ensure_future(_probe(h, stop))
    ticker = asyncio.ensure_future(_ticker(stop))
    await asyncio.sleep(0.05)
    started, cpu_started = time.perf_counter(), time.thread_time()
    status, body = await gql(h, HEAVY, keys=admin)
    heavy, heavy_cpu = time.perf_counter() - started, time.thread_time() - cpu_started
    stop.set()
    answered, block = await probe, await ticker
    assert status == 200 and sum(len(k["compute_sessions"]) for k in body["keypairs"]) == 2500
    during = [t for t in answered if started < t < started + heavy]
    print(f"heavy query {heavy * 1000:.0f} ms ({heavy_cpu * 1000:.0f} ms CPU); "
          f"{len(during)} other requests answered meanwhile; longest event-loop block "
          f"{block * 1000:.0f} ms CPU")
    # Compared with the query's own CPU time in the same run: one blocking completion
    # would hold the loop for most of it.
    assert len(during) >= 3
    assert block < heavy_cpu / 2
