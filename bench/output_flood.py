"""Agent and manager memory under hostile console output (issue 7, "unbounded output").

    var/venv/bin/python -m bench.output_flood [--cases a,b,c]

Starts a throwaway cluster (tests/e2e/cluster.py: its own database, ports, agent id and
scratch dir, on the halfstack PostgreSQL and Redis), then for each case creates a
``python`` session, floods it, and prints the resident memory (VmRSS) of the manager and
the agent process before the case, at its peak (VmHWM, reset per case, and VmRSS sampled
every 20 ms) and after the session was destroyed:

  a. 30 ``html`` items of 50 MB each, never polled;
  b. 3 runs of 100 MB of stdout each (1 MB writes), polled until finished;
  c. 1 GB of stdout (1 MB writes), never polled — the runner must survive it.

"Never polled" means the flood's run gets one execute call; the bench then waits for a
second run queued behind it (which starts only once the flood is over) and reads the
flood's result once at the end, to show what was dropped.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.client import SignedClient
from kernels import build
from tests.e2e.cluster import Cluster

MiB = 1 << 20
FLOOD_HTML = ("from kernels.runner import media\n"
              "for _ in range(30):\n    media.html('<p>' + 'h' * 50_000_000)\n")
FLOOD_STDOUT = ("import sys\nline = 'x' * 1_048_575 + '\\n'\n"
                "for _ in range({n}):\n    sys.stdout.write(line)\n")


def status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def reset_peak(pid: int) -> None:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0); ignored where not permitted."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


@dataclass
class Sampler:
    """Samples VmRSS of some processes every 20 ms in a thread; keeps each one's peak."""

    pids: dict[str, int]
    peaks: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Sampler:
        for name, pid in self.pids.items():
            reset_peak(pid)
            self.peaks[name] = status_kib(pid, "VmRSS")
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            for name, pid in self.pids.items():
                self.peaks[name] = max(self.peaks[name], status_kib(pid, "VmRSS"))

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        for name, pid in self.pids.items():
            self.peaks[name] = max(self.peaks[name], status_kib(pid, "VmHWM"))


class Bench:
    def __init__(self, api: SignedClient, cluster: Cluster) -> None:
        self.api = api
        self.pids = {"manager": cluster.procs["manager"].pid, "agent": cluster.procs["agent"].pid}
        self.rows: list[tuple[str, dict[str, int], dict[str, int], dict[str, int], str]] = []

    async def execute(self, kid: str, run_id: str, mode: str, code: str = "") -> dict[str, Any]:
        status, body = await self.api.call("POST", f"/kernel/{kid}",
                                           {"mode": mode, "runId": run_id, "code": code})
        assert status == 200, body
        return dict(body["result"])

    async def run_to_end(self, kid: str, run_id: str, code: str) -> dict[str, int]:
        """Poll a run until it finishes; returns the dropped counts it reported."""
        res = await self.execute(kid, run_id, "query", code)
        dropped: dict[str, int] = dict(res.get("dropped") or {})
        while res["status"] != "finished":
            res = await self.execute(kid, run_id, "continue")
            for kind, n in (res.get("dropped") or {}).items():
                dropped[kind] = dropped.get(kind, 0) + n
        return dropped

    async def unpolled(self, kid: str, code: str) -> dict[str, int]:
        """One call for the flood, then wait behind it, then read its result once."""
        res = await self.execute(kid, "flood", "query", code)
        dropped: dict[str, int] = dict(res.get("dropped") or {})
        if res["status"] != "finished":  # else it was over within the first call
            await self.run_to_end(kid, "after", "print('after')")
            res = await self.execute(kid, "flood", "continue")
            assert res["status"] == "finished", res
            for kind, n in (res.get("dropped") or {}).items():
                dropped[kind] = dropped.get(kind, 0) + n
        return dropped

    def rss(self) -> dict[str, int]:
        return {name: status_kib(pid, "VmRSS") for name, pid in self.pids.items()}

    async def case(self, key: str, flood: Callable[[str], Awaitable[dict[str, int]]]) -> None:
        status, body = await self.api.call("POST", "/kernel/create", {
            "lang": "python", "clientSessionToken": f"flood-{key}-{os.getpid()}"})
        assert status in (200, 201), body
        kid = body["kernelId"]
        before = self.rss()
        t0 = time.monotonic()
        with Sampler(self.pids) as sampler:
            dropped = await flood(kid)
            ok = await self.run_to_end(kid, "alive", "print('alive')") == {}
        secs = time.monotonic() - t0
        status, _ = await self.api.call("DELETE", f"/kernel/{kid}")
        assert status == 200
        await asyncio.sleep(1.0)  # let the agent finish releasing the kernel
        note = (f"{secs:.0f} s; runner {'alive' if ok else 'DEAD'}; dropped "
                + ", ".join(f"{k} {n / MiB:,.0f} MiB" for k, n in sorted(dropped.items())))
        self.rows.append((CASES[key][0], before, dict(sampler.peaks), self.rss(), note))

    def table(self) -> str:
        head = ("| case | manager RSS before / peak / after (MiB) "
                "| agent RSS before / peak / after (MiB) | notes |\n|---|---|---|---|")
        lines = [head]
        for name, before, peak, after, note in self.rows:
            cells = [" / ".join(f"{d[p] / 1024:,.0f}" for d in (before, peak, after))
                     for p in ("manager", "agent")]
            lines.append(f"| {name} | {cells[0]} | {cells[1]} | {note} |")
        return "\n".join(lines)


CASES: dict[str, tuple[str, Callable[[Bench], Callable[[str], Awaitable[dict[str, int]]]]]] = {
    "a": ("a. 30 × 50 MB html, unpolled",
          lambda b: lambda kid: b.unpolled(kid, FLOOD_HTML)),
    "b": ("b. 3 × 100 MB stdout, polled",
          lambda b: lambda kid: _polled_runs(b, kid)),
    "c": ("c. 1 GB stdout, unpolled",
          lambda b: lambda kid: b.unpolled(kid, FLOOD_STDOUT.format(n=1024))),
}


async def _polled_runs(b: Bench, kid: str) -> dict[str, int]:
    total: dict[str, int] = {}
    for i in range(3):
        for kind, n in (await b.run_to_end(kid, f"r{i}", FLOOD_STDOUT.format(n=100))).items():
            total[kind] = total.get(kind, 0) + n
    return total


def image_is_current() -> bool:
    """Whether kraken/python:latest carries this checkout's runner (it is shared)."""
    want = build.python_context().digest(build.base_context().digest())
    return build.image_hash(build.PYTHON_IMAGE) == want


async def main(cases: list[str], pg_url: str, redis_url: str) -> None:
    if not image_is_current():
        print(f"warning: {build.PYTHON_IMAGE} was not built from this checkout's runner "
              "(python -m kernels.build python); the figures are not this checkout's", flush=True)
    with tempfile.TemporaryDirectory(prefix="kraken-flood-") as tmp:
        cluster = Cluster(Path(tmp), pg_url, redis_url)
        try:
            await cluster.start()
            os.environ.update({k: v for k, v in cluster.client_env().items()
                               if k.startswith("BACKEND_")})
            async with aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(total=600)) as http:
                bench = Bench(SignedClient(http), cluster)
                for key in cases:
                    await bench.case(key, CASES[key][1](bench))
                    print(bench.table().splitlines()[-1], flush=True)
            print()
            print(bench.table())
        finally:
            await cluster.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="a,b,c", help="comma-separated subset of a,b,c")
    ap.add_argument("--pg-url", default=os.environ.get(
        "KRAKEN_TEST_PG_URL", "postgresql://kraken:kraken@127.0.0.1:15432/kraken"))
    ap.add_argument("--redis-url", default=os.environ.get(
        "KRAKEN_TEST_REDIS_URL", "redis://127.0.0.1:16379/0"))
    args = ap.parse_args()
    asyncio.run(main([c.strip() for c in args.cases.split(",") if c.strip()],
                     args.pg_url, args.redis_url))
