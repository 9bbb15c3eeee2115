"""Execute round trip of `print(1)` through the signed REST API.

    scripts/dev up && . var/env.sh && var/venv/bin/python -m bench.execute_rtt [-n 1000]

Measures client → manager → agent → runner → back, one call at a time, after a
warm-up, and prints p50/p90/p99. Target (DESIGN.md): p50 ≤ 3 ms, p99 ≤ 10 ms.
As a baseline it also times the bare HTTP round trip of `GET /` through the same
client and server, so the share of the agent link and the runner is visible.
"""
from __future__ import annotations

import argparse
import asyncio
import secrets
import time

import aiohttp

from bench.client import SignedClient, summary


async def main(n: int, warmup: int) -> None:
    async with aiohttp.ClientSession() as http:
        api = SignedClient(http)
        token = f"bench-{secrets.token_hex(4)}"
        status, body = await api.call("POST", "/kernel/create",
                                      {"lang": "python", "clientSessionToken": token})
        assert status in (200, 201), body
        kid = body["kernelId"]
        try:
            samples: list[float] = []
            for i in range(warmup + n):
                t0 = time.perf_counter()
                status, body = await api.call("POST", f"/kernel/{kid}",
                                              {"mode": "query", "code": "print(1)"})
                dt = (time.perf_counter() - t0) * 1000
                assert status == 200 and body["result"]["status"] == "finished", body
                assert body["result"]["console"] == [["stdout", "1\n"]], body
                if i >= warmup:
                    samples.append(dt)
            base: list[float] = []
            for i in range(warmup + n):
                t0 = time.perf_counter()
                status, _ = await api.call("GET", "/")
                if i >= warmup:
                    base.append((time.perf_counter() - t0) * 1000)
            print(summary("baseline: HTTP round trip GET / (no auth, no agent)", base))
            print(summary("execute print(1) via signed REST", samples))
        finally:
            await api.call("DELETE", f"/kernel/{kid}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=50)
    args = ap.parse_args()
    asyncio.run(main(args.n, args.warmup))
