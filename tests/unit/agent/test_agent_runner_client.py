"""The agent's runner client against a real runner and against an older one."""
from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import zmq
import zmq.asyncio

from agent.runner_client import RunnerClient
from common.errors import ServiceStartFailed
from common.msg_runner import (
    CONTROL_PORT,
    RUNNER_PROTOCOL,
    ControlAck,
    Message,
    Ping,
    RunnerStatus,
    RunQuery,
)

REPO = Path(__file__).resolve().parents[3]


def private_loopback() -> str:
    """A loopback address of its own, so the runner's fixed ports 2000-2002 are free."""
    return f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"


@pytest.fixture
async def zctx() -> AsyncIterator[zmq.asyncio.Context]:
    ctx = zmq.asyncio.Context()
    yield ctx
    ctx.term()


async def test_status_and_pings_of_a_real_runner(zctx: zmq.asyncio.Context,
                                                 tmp_path: Path) -> None:
    host = private_loopback()
    env = dict(os.environ, KRAKEN_RUNNER_HOST=host, KRAKEN_RUNNER_WORKDIR=str(tmp_path),
               PYTHONPATH=str(REPO))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kernels.runner", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    seen: list[Message] = []
    client = RunnerClient(zctx, host, seen.append)
    try:
        await client.wait_ready(20)
        assert await client.status() == RunnerStatus()
        await client.send(RunQuery(run_id="nap", code="import time\ntime.sleep(30)"))
        for _ in range(100):
            if (await client.status()).state == "running":  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.05)
        assert await client.status() == RunnerStatus(run_id="nap", state="running")
        # many pings in flight at once: each gets its own answer, at once, while code runs
        acks = await asyncio.gather(*(client.control(Ping(), 2) for _ in range(20)))
        assert all(a.detail == "pong" for a in acks)
        await client.interrupt()
    finally:
        await client.close()
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)


async def test_an_older_runner_that_cannot_say_answers_unknown_at_once(
        zctx: zmq.asyncio.Context) -> None:
    host = private_loopback()
    old = zctx.socket(zmq.ROUTER)
    old.setsockopt(zmq.LINGER, 0)
    old.bind(f"tcp://{host}:{CONTROL_PORT}")

    async def serve_like_runner_v1() -> None:
        while True:
            frames = await old.recv_multipart()
            try:
                _msg, corr_id = RUNNER_PROTOCOL.decode(frames[-1])
                if _msg.msg_type in ("get-status", "start-service"):  # unknown to old runners
                    raise ValueError(f"unknown message type {_msg.msg_type!r}")
                reply, corr = ControlAck(detail="pong"), -corr_id
            except ValueError as e:
                reply, corr = ControlAck(ok=False, detail=str(e)), 0
            frames[-1] = RUNNER_PROTOCOL.encode(reply, corr)
            await old.send_multipart(frames)

    server = asyncio.ensure_future(serve_like_runner_v1())
    client = RunnerClient(zctx, host, lambda m: None)
    try:
        assert (await client.control(Ping(), 5)).ok
        t0 = time.monotonic()
        assert await client.status() is None
        assert time.monotonic() - t0 < 1.0
        t0 = time.monotonic()
        with pytest.raises(ServiceStartFailed, match="older than the service proxy"):
            await client.start_service("jupyter")  # unknown before issue 9 as well
        assert time.monotonic() - t0 < 1.0
    finally:
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)
        await client.close()
        old.close(linger=0)
