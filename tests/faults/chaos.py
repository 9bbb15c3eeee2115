"""Random faults while clients create, execute and destroy: the random-sequence test
and the soak benchmark (bench/fault_soak.py) both drive this.

Each fault is injected and ended (the process restarted, the service started again);
then the clients pause between cycles and the invariants are awaited: the seconds
that takes is the fault's convergence time.
"""
from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import signal
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tests.faults.client import Outcome, RecordingClient
from tests.faults.cluster import AGENTS, HEARTBEAT_TIMEOUT, MANAGERS, FaultCluster
from tests.faults.invariants import converge, leaked_containers, stuck_sessions
from tests.integration.manager.privatepg import PrivatePostgres, PrivateRedis

Fault = Callable[[FaultCluster, random.Random, RecordingClient], Awaitable[str]]


async def kill_manager(c: FaultCluster, rng: random.Random, _: RecordingClient) -> str:
    name = rng.choice(MANAGERS)
    await asyncio.to_thread(c.kill, name)
    await asyncio.sleep(rng.uniform(0.5, 3))
    await asyncio.to_thread(c.start_again, name)
    return f"SIGKILL {name}"


async def restart_process(c: FaultCluster, rng: random.Random, _: RecordingClient) -> str:
    name = rng.choice((*MANAGERS, *AGENTS))
    await asyncio.to_thread(c.restart, name, signal.SIGTERM)
    return f"restart {name}"


async def kill_agent(c: FaultCluster, rng: random.Random, _: RecordingClient) -> str:
    name = rng.choice(AGENTS)
    await asyncio.to_thread(c.kill, name)
    await asyncio.sleep(rng.uniform(0, 2 * HEARTBEAT_TIMEOUT))
    await asyncio.to_thread(c.start_again, name)
    return f"SIGKILL {name}"


async def pause_agent(c: FaultCluster, rng: random.Random, _: RecordingClient) -> str:
    name = rng.choice(AGENTS)
    seconds = rng.uniform(HEARTBEAT_TIMEOUT / 2, 3 * HEARTBEAT_TIMEOUT)
    c.pause(name)
    await asyncio.sleep(seconds)
    c.resume(name)
    return f"SIGSTOP {name} {seconds:.1f} s"


async def _outage(service: PrivatePostgres | PrivateRedis, seconds: float) -> None:
    await asyncio.to_thread(service.stop)
    await asyncio.sleep(seconds)
    await asyncio.to_thread(service.start)


async def postgres_outage(c: FaultCluster, rng: random.Random, _: RecordingClient) -> str:
    seconds = rng.uniform(2, 10)
    await _outage(c.pg, seconds)
    return f"PostgreSQL down {seconds:.1f} s"


async def redis_outage(c: FaultCluster, rng: random.Random, _: RecordingClient) -> str:
    seconds = rng.uniform(2, 6)
    await _outage(c.redis, seconds)
    return f"Redis down {seconds:.1f} s"


async def pause_runner(c: FaultCluster, rng: random.Random, _: RecordingClient) -> str:
    kernels = sorted(set((await asyncio.to_thread(c.kernel_containers)).values()))
    if not kernels:
        return "SIGSTOP runner: no kernel running"
    kernel = rng.choice(kernels)
    try:
        pids = await asyncio.to_thread(c.pause_runner, kernel)
    except Exception as e:  # the container went away meanwhile
        return f"SIGSTOP runner of {kernel}: {e!r}"
    seconds = rng.uniform(2, 8)
    await asyncio.sleep(seconds)
    c.resume_pids(pids)
    return f"SIGSTOP runner of {kernel} {seconds:.1f} s"


async def destroy_racing_create(c: FaultCluster, rng: random.Random,
                                client: RecordingClient) -> str:
    token = f"chaos-race-{secrets.token_hex(3)}"
    create = asyncio.ensure_future(client.create(token))
    await asyncio.to_thread(c.wait_session_status, token, ("PREPARING", "RUNNING"), 20)
    await asyncio.sleep(rng.uniform(0, 0.3))
    await client.destroy(token)
    await create
    return "destroy racing create"


FAULTS: dict[str, Fault] = {
    "kill-manager": kill_manager, "restart": restart_process, "kill-agent": kill_agent,
    "pause-agent": pause_agent, "postgres-outage": postgres_outage,
    "redis-outage": redis_outage, "pause-runner": pause_runner,
    "destroy-racing-create": destroy_racing_create,
}


@dataclass
class Report:
    faults: list[tuple[str, float | None, list[str]]] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    leaked: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)

    @property
    def survived(self) -> int:
        return sum(1 for _, took, _ in self.faults if took is not None)

    def errors_by_type(self) -> Counter[str]:
        return Counter(f"{o.op}:{o.status}:{o.kind}" for o in self.outcomes if not o.ok)

    def lines(self) -> list[str]:
        times = [t for _, t, _ in self.faults if t is not None]
        out = [f"faults survived: {self.survived}/{len(self.faults)}",
               f"leaked containers: {len(self.leaked)}", f"stuck sessions: {len(self.stuck)}",
               f"client calls: {len(self.outcomes)}, failures (hang or 500): "
               f"{sum(o.is_failure for o in self.outcomes)}"]
        if times:
            out.append(f"converged after each fault: p50 {statistics.median(times):.1f} s, "
                       f"max {max(times):.1f} s")
        out += [f"  client error {k}: {n}" for k, n in sorted(self.errors_by_type().items())]
        out += [f"  not converged after {d}: {v}" for d, t, v in self.faults if t is None]
        return out


class ClientLoop:
    """Workers that create, execute and destroy until stopped; they wait at ``gate``
    between cycles so the invariants can be checked on a quiet cluster."""

    def __init__(self, client: RecordingClient, workers: int = 2) -> None:
        self.client = client
        self.gate = asyncio.Event()
        self.gate.set()
        self.idle = 0
        self.all_idle = asyncio.Event()
        self.stopping = False
        self.tasks = [asyncio.ensure_future(self._work(i)) for i in range(workers)]

    async def _work(self, n: int) -> None:
        while not self.stopping:
            if not self.gate.is_set():
                self.idle += 1
                if self.idle == len(self.tasks):
                    self.all_idle.set()
                await self.gate.wait()
                self.idle -= 1
                continue
            token = f"loop-{n}-{secrets.token_hex(3)}"
            created = await self.client.create(token)
            if created.ok:
                await self.client.execute(token, "print(6 * 7)")
            else:
                await asyncio.sleep(0.5)
            # also after a failed create, as a careful client does: the session may exist
            # (a create cut off by a fault is adopted later, docs/reconciliation.md)
            await self._destroy(token)

    async def _destroy(self, token: str, limit: float = 20) -> None:
        """Destroy until done or gone; a destroy refused during an outage (503) is retried."""
        deadline = time.monotonic() + limit
        while True:
            gone = await self.client.destroy(token)
            if gone.ok or gone.status == 404 or time.monotonic() > deadline:
                return
            await asyncio.sleep(1)

    async def quiesce(self, limit: float = 90) -> None:
        self.all_idle.clear()
        self.gate.clear()
        with contextlib.suppress(TimeoutError):  # a cycle stuck in a call: check anyway
            await asyncio.wait_for(self.all_idle.wait(), limit)

    async def stop(self) -> None:
        self.stopping = True
        self.gate.set()
        await asyncio.gather(*self.tasks)


async def run_chaos(cluster: FaultCluster, client: RecordingClient, faults: int, seed: int,
                    converge_limit: float = 60, log: Callable[[str], None] = print) -> Report:
    rng = random.Random(seed)
    report = Report()
    loop = ClientLoop(client)
    try:
        for i in range(faults):
            await asyncio.sleep(rng.uniform(0.5, 3))
            what = await FAULTS[rng.choice(sorted(FAULTS))](cluster, rng, client)
            await asyncio.to_thread(cluster.heal)
            await loop.quiesce()
            try:
                took: float | None = await asyncio.to_thread(converge, cluster, converge_limit)
                found: list[str] = []
            except AssertionError as e:
                took, found = None, str(e).splitlines()[1:]
            report.faults.append((what, took, found))
            log(f"fault {i + 1}/{faults}: {what}: "
                + (f"converged in {took:.1f} s" if took is not None else "NOT converged"))
            loop.gate.set()
    finally:
        await loop.stop()
    await asyncio.to_thread(cluster.heal)
    report.outcomes = list(client.outcomes)
    report.leaked = await asyncio.to_thread(leaked_containers, cluster)
    report.stuck = await asyncio.to_thread(stuck_sessions, cluster)
    return report
