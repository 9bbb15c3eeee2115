"""Session create → ready latency of a `python` session, beside a bare `docker run`.

    scripts/dev up && . var/env.sh && var/venv/bin/python -m bench.create_latency [-n 20]

Kraken: the time of `POST /kernel/create` (it answers once the runner inside the
container is ready), then the session is destroyed (not timed).
Baseline, measured in the same run and alternated with it: `docker run -d` of the
same image with the same readiness test — a ZeroMQ ping answered by the runner on
its control port — then `docker rm -f` (not timed). Prints p50/p90 and the ratio.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import subprocess
import time

import aiohttp
import zmq
import zmq.asyncio

from bench.client import SignedClient, percentile, summary
from common.msg_runner import CONTROL_PORT, RUNNER_PROTOCOL, ControlAck, Ping

IMAGE = "kraken/python:latest"


async def runner_ping(ctx: zmq.asyncio.Context, ip: str, deadline: float) -> None:
    while time.perf_counter() < deadline:
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(f"tcp://{ip}:{CONTROL_PORT}")
        try:
            await sock.send(RUNNER_PROTOCOL.encode(Ping(), 1))
            if await sock.poll(50):
                msg, _ = RUNNER_PROTOCOL.decode(await sock.recv())
                if isinstance(msg, ControlAck):
                    return
        finally:
            sock.close()
    raise TimeoutError("runner did not answer")


async def bare_docker_run(ctx: zmq.asyncio.Context, network: str) -> float:
    t0 = time.perf_counter()
    cid = subprocess.run(["docker", "run", "-d", "--init", "--network", network, IMAGE],
                         capture_output=True, text=True, check=True).stdout.strip()
    try:
        info = json.loads(subprocess.run(["docker", "inspect", cid], capture_output=True,
                                         text=True, check=True).stdout)[0]
        ip = info["NetworkSettings"]["Networks"][network]["IPAddress"]
        await runner_ping(ctx, ip, time.perf_counter() + 30)
        return (time.perf_counter() - t0) * 1000
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True)


async def kraken_create(api: SignedClient) -> float:
    token = f"bench-{secrets.token_hex(4)}"
    t0 = time.perf_counter()
    status, body = await api.call("POST", "/kernel/create",
                                  {"lang": "python", "clientSessionToken": token})
    dt = (time.perf_counter() - t0) * 1000
    assert status in (200, 201), body
    await api.call("DELETE", f"/kernel/{body['kernelId']}")
    return dt


async def main(n: int, network: str) -> None:
    ctx = zmq.asyncio.Context()
    kraken: list[float] = []
    bare: list[float] = []
    async with aiohttp.ClientSession() as http:
        api = SignedClient(http)
        await kraken_create(api)  # warm-up: first container start pays page-cache misses
        await bare_docker_run(ctx, network)
        for _ in range(n):
            bare.append(await bare_docker_run(ctx, network))
            kraken.append(await kraken_create(api))
    ctx.term()
    print(summary("bare docker run → runner ready", bare))
    print(summary("kraken create → ready", kraken))
    print(f"ratio p50 kraken/bare = {percentile(kraken, 50) / percentile(bare, 50):.2f} "
          f"(target ≤ 1.3)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=20)
    ap.add_argument("--network", default="kraken-kernels")
    args = ap.parse_args()
    asyncio.run(main(args.n, args.network))
