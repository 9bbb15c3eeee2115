"""The PENDING queue: 100 creates against a full cluster, and the planner at scale.

    source /work/test-env.sh   # or any PostgreSQL + Redis: KRAKEN_TEST_PG_URL, _REDIS_URL
    var/venv/bin/python -m bench.queue [--creates 100] [--slots 10] [--policy fifo,drf]
                                       [--plan-agents 20000 --plan-sessions 20000]

Cluster part (per policy): an in-process manager (the integration harness: a throwaway
database, real PostgreSQL and Redis) and one fake agent with ``--slots`` cores, filled by
as many one-core sessions. Then ``--creates`` creates arrive one after another (each
waits in the queue, ``maxWaitSeconds`` 600), from two keypairs: the first 70 % from A,
the rest from B. Room is then freed one session at a time (the oldest running one is
destroyed) until every create has answered. Printed: every create answered (and how),
whether the placement order is the policy's (FIFO: arrival order; DRF: always the
keypair holding fewer sessions, ties to the earlier arrival), and the time from room
freed (the destroyed session's final transition) to placed (the next session's
PENDING → SCHEDULED), both stamped by PostgreSQL, p50/p99.

Planner part: ``manager.queueplan.plan`` over synthetic agents and queued sessions.
"""
from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import sqlalchemy as sa

from bench.client import percentile
from common.ids import AgentId
from manager.db.tables import kernel_events, kernels
from manager.queueplan import QueuedSession, plan
from manager.scheduler import AgentSnapshot, PlacementRequest
from tests.integration.manager.conftest import (
    Harness,
    _create_db,
    _drop_db,
    make_manager_config,
    open_harness,
)

ONE_CORE = {"instanceCores": 1, "instanceMemory": 0.25}


async def _rows(h: Harness) -> list[Any]:
    return await h.sessions()


async def _wait(check: Any, what: str, limit: float = 60.0) -> Any:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        got = await check()
        if got:
            return got
        await asyncio.sleep(0.01)
    raise RuntimeError(f"timed out waiting for {what}")


async def cluster_run(policy: str, creates: int, slots: int) -> None:
    name = f"kraken_bench_queue_{secrets.token_hex(4)}"
    url = await _create_db(name)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config = make_manager_config(url, Path(tmp), scheduler={
                "policy": policy, "sweep_interval": 3600.0})
            async with open_harness(config) as h:
                await _cluster(h, policy, creates, slots)
    finally:
        await _drop_db(name)


async def _call(http: aiohttp.ClientSession, h: Harness, path: str, body: Any,
                keys: tuple[str, str]) -> tuple[int, Any]:
    """A signed POST on a session of our own (the harness client's pool has 100
    connections; 100 waiting creates would starve it)."""
    async with http.post(h.client.make_url(path), data=orjson.dumps(body),
                         headers=h.headers("POST", path, keys)) as resp:
        raw = await resp.read()
        return resp.status, (orjson.loads(raw) if raw else None)


async def _cluster(h: Harness, policy: str, creates: int, slots: int) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=aiohttp.ClientTimeout(total=None)) as http:
        await _cluster_on(http, h, policy, creates, slots)


async def _cluster_on(http: aiohttp.ClientSession, h: Harness, policy: str, creates: int,
                      slots: int) -> None:
    await h.agent(cpu=str(slots), mem=str(1 << 40))
    keys = {k: await h.keypair(concurrency_limit=creates + slots) for k in ("A", "B")}
    for i in range(slots):
        status, _ = await h.call("POST", "/kernel/create", {
            "lang": "python", "clientSessionToken": f"holder-{i:03d}", "config": ONE_CORE},
            keys["A"])
        assert status == 201, status
    owner_of: dict[str, str] = {}
    tasks = []
    split = int(creates * 0.7)
    for i in range(creates):
        who = "A" if i < split else "B"
        token = f"queued-{i:03d}"
        owner_of[token] = who
        tasks.append(asyncio.ensure_future(_call(http, h, "/kernel/create", {
            "lang": "python", "clientSessionToken": token, "config": ONE_CORE,
            "maxWaitSeconds": 600}, keys[who])))
        await _wait(lambda n=i + 1: _queued_count(h, n), f"{token} queued")
    holders = {f"holder-{i:03d}": "A" for i in range(slots)}
    freed: list[str] = []
    while not all(t.done() for t in tasks):
        running = sorted((r for r in await _rows(h) if r.status == "RUNNING"),
                         key=lambda r: r.status_changed)
        victim = running[0]
        who = holders.get(victim.session_name) or owner_of[victim.session_name]
        status, _ = await h.call("DELETE", f"/kernel/{victim.session_name}", keys=keys[who])
        assert status == 200, status
        freed.append(str(victim.id))
        want = min(slots, sum(1 for t in tasks if not t.done()) + len(running) - 1)
        await _wait(lambda want=want: _running_or_done(h, want), "room filled again")
    answers = [await t for t in tasks]
    codes: dict[int, int] = {}
    for status, _ in answers:
        codes[status] = codes.get(status, 0) + 1
    order, gaps = await _placements(h, freed)
    expected = _expected_order(policy, [f"queued-{i:03d}" for i in range(creates)], owner_of,
                               slots)
    print(f"queue [{policy}]: {creates} creates against a full {slots}-core agent: "
          f"answers {codes}; order kept: {order == expected}")
    if order != expected:
        print(f"  placed  : {order[:20]} ...\n  expected: {expected[:20]} ...")
    print(f"  room freed → placed: p50 {percentile(gaps, 50) * 1000:.1f} ms, "
          f"p99 {percentile(gaps, 99) * 1000:.1f} ms, max {max(gaps) * 1000:.1f} ms "
          f"({len(gaps)} placements)")


async def _queued_count(h: Harness, n: int) -> bool:
    return sum(1 for r in await _rows(h) if r.status == "PENDING" and r.queued_at) >= n


async def _running_or_done(h: Harness, want: int) -> bool:
    rows = await _rows(h)
    placed = sum(1 for r in rows if r.status in ("SCHEDULED", "PREPARING", "RUNNING"))
    return placed >= want and not any(r.status in ("SCHEDULED", "PREPARING") for r in rows)


async def _placements(h: Harness, freed: list[str]) -> tuple[list[str], list[float]]:
    """(tokens in placement order, seconds from each freeing to the next placement)."""
    async with h.engine.connect() as conn:
        placed = (await conn.execute(
            sa.select(kernels.c.session_name, kernel_events.c.at)
            .join(kernels, kernels.c.id == kernel_events.c.kernel_id)
            .where(kernel_events.c.to_status == "SCHEDULED",
                   kernels.c.session_name.like("queued-%"))
            .order_by(kernel_events.c.at))).all()
        ends = (await conn.execute(
            sa.select(kernel_events.c.kernel_id, kernel_events.c.at)
            .where(kernel_events.c.to_status.in_(["TERMINATED", "CANCELLED", "ERROR"]))
            .order_by(kernel_events.c.at))).all()
    end_at = {str(r.kernel_id): r.at for r in ends}
    gaps = []
    times = [r.at for r in placed]
    for kernel_id in freed:
        at = end_at.get(kernel_id)
        later = [t for t in times if at is not None and t >= at]
        if later:
            gaps.append((later[0] - at).total_seconds())
    return [r.session_name for r in placed], gaps


def _expected_order(policy: str, arrivals: list[str], owner_of: dict[str, str],
                    slots: int) -> list[str]:
    if policy == "fifo":
        return arrivals
    held = {"A": slots, "B": 0}  # the holders are A's
    queues = {k: [t for t in arrivals if owner_of[t] == k] for k in held}
    out: list[str] = []
    while queues["A"] or queues["B"]:
        # room is freed by destroying the oldest running session: the holders first,
        # then the queued ones in placement order
        n = len(out)
        held["A" if n < slots else owner_of[out[n - slots]]] -= 1
        ready = [k for k in held if queues[k]]
        k = min(ready, key=lambda k: (held[k], arrivals.index(queues[k][0])))
        out.append(queues[k].pop(0))
        held[k] += 1
    return out


def planner_run(n_agents: int, n_sessions: int) -> None:
    rng = random.Random(5)
    agents = [AgentSnapshot(AgentId(f"agent-{i:05d}"),
                            {"cpu": float(rng.choice([8, 16, 32, 64])),
                             "mem": float(rng.choice([32, 64, 128]) * 2**30)},
                            {"cpu": 0.0, "mem": 0.0}, frozenset({"kraken/python:latest"}))
              for i in range(n_agents)]
    queue = [QueuedSession(i, f"K{i % 50}", PlacementRequest(
        "kraken/python:latest", {"cpu": float(rng.choice([1, 2, 4])),
                                 "mem": float(rng.choice([1, 2, 4]) * 2**30)}), i)
             for i in range(n_sessions)]
    for policy in ("fifo", "drf"):
        t0 = time.perf_counter()
        placed = plan(queue, agents, policy)  # type: ignore[arg-type]
        dt = time.perf_counter() - t0
        print(f"planner [{policy}]: {n_sessions} queued over {n_agents} agents: "
              f"{len(placed)} placed in {dt:.2f} s ({len(placed) / dt:,.0f} placements/s)")


async def main(args: argparse.Namespace) -> None:
    for policy in args.policy.split(","):
        await cluster_run(policy, args.creates, args.slots)
    planner_run(args.plan_agents, args.plan_sessions)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--creates", type=int, default=100)
    ap.add_argument("--slots", type=int, default=10)
    ap.add_argument("--policy", default="fifo,drf")
    ap.add_argument("--plan-agents", type=int, default=20000)
    ap.add_argument("--plan-sessions", type=int, default=20000)
    asyncio.run(main(ap.parse_args()))
