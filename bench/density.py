"""Density: how many idle ``python`` sessions one host holds, and what they cost.

    source /work/test-env.sh && var/venv/bin/python -m bench.density [-n 200]

Starts a throwaway cluster (tests/e2e/cluster.py: its own database, ports, agent id and
scratch dir, on the halfstack PostgreSQL and Redis; the agent's default
``cpu_overcommit``), then in one run:

  1. creates one session and times ``print(1)`` executes on it (one alive);
  2. creates the other n-1 sessions (``--parallel`` creates at a time) and prints the
     time to create them all;
  3. runs ``print(1)`` in every session (each must answer ``1``);
  4. times ``print(1)`` on the first session again, now with n alive;
  5. prints the per-session memory cost (host MemTotal-MemAvailable before/after ÷ n-1,
     and the containers' own memory usage from ``docker stats``), the scratch images'
     allocated bytes, and the manager's and agent's resident memory (VmRSS);
  6. destroys every session.

Sessions ask for ``--mem`` MiB each (memory stays a hard reservation: 200 × the default
1 GiB would not fit in 24 GiB) and the default 1 core (a CPU limit, not reserved cores).
Target (issue 10): all n run; execute p50 with n alive within 1.5× of one alive.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.client import SignedClient, percentile, summary
from bench.output_flood import image_is_current, status_kib
from kernels import build
from tests.e2e.cluster import Cluster
from tests.integration.agent.harness import unmount_scratch

MiB = 1 << 20


def host_used() -> int:
    """Bytes in use on the host: MemTotal - MemAvailable."""
    info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    return (int(info["MemTotal"].split()[0]) - int(info["MemAvailable"].split()[0])) * 1024


_UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "kB": 1000, "MB": 10**6,
          "GB": 10**9}


def container_memory(ids: list[str]) -> list[int]:
    """Each container's memory usage (bytes) as ``docker stats`` reports it."""
    out = subprocess.run(["docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", *ids],
                         capture_output=True, text=True, check=True, timeout=300).stdout
    sizes = []
    for line in out.splitlines():
        used = line.split("/")[0].strip()
        number = used.rstrip("KMGiBk")
        sizes.append(int(float(number) * _UNITS[used[len(number):]]))
    return sizes


def allocated(root: Path) -> int:
    """Disk blocks allocated to the scratch images under ``root`` (they are sparse)."""
    return sum(p.stat().st_blocks * 512 for p in root.glob("*.img"))


class Density:
    def __init__(self, api: SignedClient, cluster: Cluster, mem_mib: int) -> None:
        self.api = api
        self.cluster = cluster
        self.mem_mib = mem_mib
        self.kernels: list[str] = []

    async def create(self, index: int) -> float:
        t0 = time.perf_counter()
        status, body = await self.api.call("POST", "/kernel/create", {
            "lang": "python", "clientSessionToken": f"density-{os.getpid()}-{index}",
            "config": {"instanceMemory": self.mem_mib}})
        dt = time.perf_counter() - t0
        assert status in (200, 201), (index, status, body)
        self.kernels.append(body["kernelId"])
        return dt

    async def print1(self, kid: str) -> float:
        t0 = time.perf_counter()
        status, body = await self.api.call("POST", f"/kernel/{kid}",
                                           {"mode": "query", "code": "print(1)"})
        dt = (time.perf_counter() - t0) * 1000
        assert status == 200 and body["result"]["status"] == "finished", (kid, body)
        assert body["result"]["console"] == [["stdout", "1\n"]], (kid, body)
        return dt

    async def rtt(self, kid: str, samples: int, warmup: int) -> list[float]:
        out = []
        for i in range(warmup + samples):
            dt = await self.print1(kid)
            if i >= warmup:
                out.append(dt)
        return out

    async def destroy_all(self, parallel: int) -> None:
        gate = asyncio.Semaphore(parallel)

        async def one(kid: str) -> None:
            async with gate:
                await self.api.call("DELETE", f"/kernel/{kid}")
        await asyncio.gather(*(one(k) for k in self.kernels), return_exceptions=True)

    def rss_mib(self) -> str:
        return ", ".join(f"{name} {status_kib(p.pid, 'VmRSS') / 1024:,.0f} MiB"
                         for name, p in self.cluster.procs.items())


async def run(d: Density, n: int, parallel: int, samples: int, warmup: int) -> None:
    print(f"{d.rss_mib()} (no session)", flush=True)
    await d.create(0)
    one = await d.rtt(d.kernels[0], samples, warmup)
    print(summary("execute print(1), 1 session alive", one), flush=True)
    before = host_used()
    gate = asyncio.Semaphore(parallel)

    async def create(i: int) -> float:
        async with gate:
            return await d.create(i)
    t0 = time.perf_counter()
    creates = await asyncio.gather(*(create(i) for i in range(1, n)))
    total = time.perf_counter() - t0
    print(f"created {n - 1} more sessions ({n} alive) in {total:.1f} s "
          f"({parallel} at a time; each create p50 {percentile(creates, 50):.2f} s, "
          f"max {max(creates):.2f} s)", flush=True)
    t0 = time.perf_counter()
    every = await asyncio.gather(*(d.print1(k) for k in d.kernels))
    print(f"print(1) in all {len(every)} sessions at once: {time.perf_counter() - t0:.1f} s, "
          f"each p50 {percentile(every, 50):.0f} ms", flush=True)
    many = await d.rtt(d.kernels[0], samples, warmup)
    print(summary(f"execute print(1), {n} sessions alive", many), flush=True)
    await asyncio.sleep(2)  # let page cache and runners settle before sampling memory
    grown = host_used() - before
    mem = container_memory(d.cluster.containers())
    print(f"host memory used: +{grown / MiB:,.0f} MiB for {n - 1} sessions = "
          f"{grown / (n - 1) / MiB:.1f} MiB per session", flush=True)
    print(f"container memory (docker stats) over {len(mem)}: p50 "
          f"{percentile([m / MiB for m in mem], 50):.1f} MiB, max {max(mem) / MiB:.1f} MiB; "
          f"scratch images allocate {allocated(d.cluster.workdir / 'scratch') / MiB / n:.1f}"
          " MiB of disk each", flush=True)
    print(f"{d.rss_mib()} ({n} sessions)", flush=True)
    ratio = percentile(many, 50) / percentile(one, 50)
    print(f"p50 with {n} alive / with 1 alive: {ratio:.2f}x (target <= 1.5x)", flush=True)


async def main(args: Any) -> None:
    if not image_is_current():
        print(f"warning: {build.PYTHON_IMAGE} was not built from this checkout's runner "
              "(python -m kernels.build python); the figures are not this checkout's", flush=True)
    with tempfile.TemporaryDirectory(prefix="kraken-density-") as tmp:
        cluster = Cluster(Path(tmp), args.pg_url, args.redis_url)
        d: Density | None = None
        try:
            await cluster.start()
            cluster.sql("UPDATE keypairs SET concurrency_limit = $1", args.n + 5)
            os.environ.update({k: v for k, v in cluster.client_env().items()
                               if k.startswith("BACKEND_")})
            async with aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(total=600),
                    connector=aiohttp.TCPConnector(limit=args.n + 10)) as http:
                d = Density(SignedClient(http), cluster, args.mem)
                try:
                    await run(d, args.n, args.parallel, args.samples, args.warmup)
                finally:
                    t0 = time.perf_counter()
                    await d.destroy_all(args.parallel)
                    print(f"destroyed {len(d.kernels)} sessions in "
                          f"{time.perf_counter() - t0:.1f} s", flush=True)
        finally:
            await cluster.stop()
            unmount_scratch(Path(tmp) / "scratch")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=200, help="sessions alive at the end")
    ap.add_argument("--parallel", type=int, default=8, help="creates in flight at once")
    ap.add_argument("--mem", type=int, default=64, help="MiB each session asks for")
    ap.add_argument("--samples", type=int, default=200, help="timed executes per phase")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--pg-url", default=os.environ.get(
        "KRAKEN_TEST_PG_URL", "postgresql://kraken:kraken@127.0.0.1:15432/kraken"))
    ap.add_argument("--redis-url", default=os.environ.get(
        "KRAKEN_TEST_REDIS_URL", "redis://127.0.0.1:16379/0"))
    asyncio.run(main(ap.parse_args()))
