"""Streaming latency: terminal keystroke echo and time to first output of a streamed execute.

    var/venv/bin/python -m bench.stream_echo [-n 300] [--runs 100]          # own cluster
    . var/env.sh && var/venv/bin/python -m bench.stream_echo --running        # scripts/dev up

Starts a throwaway cluster (tests/e2e/cluster.py: its own database, ports, agent id and
scratch dir, on the halfstack PostgreSQL and Redis) unless ``--running``, creates one
``python`` session and measures, one at a time after a warm-up:

* **keystroke echo** — on ``/stream/kernel/:id/pty`` (seed §2.12.4), with ``cat >
  /dev/null`` in the foreground so the pty's line discipline echoes each character: the
  time from sending a ``stdin`` frame of one character to receiving the ``out`` frame(s)
  that carry it back (client → manager → agent → runner pty → back). Target p50 ≤ 5 ms.
* **streamed execute** — ``/stream/kernel/:id/execute`` with ``print(1)``: time to the
  first frame carrying the ``1`` (handshake included: what a client waits for) and to the
  final ``finished`` frame.
* beside them, in the same run and through the same client and server: the REST execute
  round trip of ``print(1)`` (``POST /kernel/:id``) and the bare HTTP ``GET /``.

Prints p50/p90/p99 for each. No figure is asserted; docs/benchmarks.md keeps the results.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import string
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from bench.client import SignedClient, percentile, summary
from tests.e2e.cluster import Cluster

GUARD = 30.0  # seconds any one expected frame may take before the bench gives up
ECHO_TARGET_P50_MS = 5.0
LINE = 60  # keystrokes per line before an Enter (keeps cat's line buffer small)


def stdin(text: str) -> str:
    return json.dumps({"type": "stdin", "chars": base64.b64encode(text.encode()).decode()})


async def frames(ws: aiohttp.ClientWebSocketResponse) -> AsyncIterator[dict[str, Any]]:
    while True:
        msg = await asyncio.wait_for(ws.receive(), GUARD)
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise RuntimeError(f"stream ended: {msg.type} {msg.data!r} {msg.extra!r}")
        yield json.loads(msg.data)


async def read_out_until(ws: aiohttp.ClientWebSocketResponse, needle: str) -> str:
    """Output of ``out`` frames until ``needle`` appears in it."""
    seen = ""
    async for frame in frames(ws):
        if frame.get("type") == "error":
            raise RuntimeError(f"pty error: {frame.get('data')}")
        if frame.get("type") == "out":
            seen += base64.b64decode(frame["data"]).decode(errors="replace")
            if needle in seen:
                return seen
    raise AssertionError("unreachable")


async def keystroke_echo(api: SignedClient, kid: str, n: int, warmup: int) -> list[float]:
    samples: list[float] = []
    async with api.ws_connect(f"/stream/kernel/{kid}/pty") as ws:
        await ws.send_str(json.dumps({"type": "resize", "rows": 24, "cols": 200}))
        # the command line echoes RE""ADY; only the output has READY
        await ws.send_str(stdin('echo RE""ADY; exec cat > /dev/null\n'))
        tail = (await read_out_until(ws, "READY")).split("READY", 1)[1]
        if "\n" not in tail:
            await read_out_until(ws, "\n")
        letters = string.ascii_letters
        for i in range(warmup + n):
            if i and i % LINE == 0:
                await ws.send_str(stdin("\r"))
                await read_out_until(ws, "\n")
            ch = letters[i % len(letters)]
            t0 = time.perf_counter()
            await ws.send_str(stdin(ch))
            await read_out_until(ws, ch)
            if i >= warmup:
                samples.append((time.perf_counter() - t0) * 1000)
        await ws.send_str(stdin("\x04"))  # EOF: cat ends, the shell is respawned
    return samples


async def streamed_execute(api: SignedClient, kid: str, n: int, warmup: int
                           ) -> tuple[list[float], list[float]]:
    first: list[float] = []
    done: list[float] = []
    for i in range(warmup + n):
        t0 = time.perf_counter()
        t_first = 0.0
        async with api.ws_connect(f"/stream/kernel/{kid}/execute") as ws:
            await ws.send_json({"code": "print(1)", "mode": "query", "options": {}})
            out = ""
            async for frame in frames(ws):
                out += "".join(text for kind, text in frame.get("console") or []
                               if kind == "stdout")
                if not t_first and "1" in out:
                    t_first = time.perf_counter()
                if frame.get("status") == "finished":
                    break
            t_done = time.perf_counter()
        if out != "1\n" or not t_first:
            raise RuntimeError(f"streamed print(1) printed {out!r}")
        if i >= warmup:
            first.append((t_first - t0) * 1000)
            done.append((t_done - t0) * 1000)
    return first, done


async def rest_execute(api: SignedClient, kid: str, n: int, warmup: int) -> list[float]:
    samples: list[float] = []
    for i in range(warmup + n):
        t0 = time.perf_counter()
        status, body = await api.call("POST", f"/kernel/{kid}",
                                      {"mode": "query", "code": "print(1)"})
        dt = (time.perf_counter() - t0) * 1000
        if status != 200 or body["result"]["console"] != [["stdout", "1\n"]]:
            raise RuntimeError(f"REST print(1): {status} {body}")
        if i >= warmup:
            samples.append(dt)
    return samples


async def http_baseline(api: SignedClient, n: int, warmup: int) -> list[float]:
    samples: list[float] = []
    for i in range(warmup + n):
        t0 = time.perf_counter()
        await api.call("GET", "/")
        if i >= warmup:
            samples.append((time.perf_counter() - t0) * 1000)
    return samples


async def measure(n: int, runs: int, warmup: int) -> None:
    async with aiohttp.ClientSession() as http:
        api = SignedClient(http)
        token = f"bench-{secrets.token_hex(4)}"
        status, body = await api.call("POST", "/kernel/create",
                                      {"lang": "python", "clientSessionToken": token})
        if status not in (200, 201):
            raise RuntimeError(f"create: {status} {body}")
        kid = body["kernelId"]
        try:
            echo = await keystroke_echo(api, kid, n, warmup)
            first, done = await streamed_execute(api, kid, runs, warmup)
            rest = await rest_execute(api, kid, runs, warmup)
            base = await http_baseline(api, runs, warmup)
        finally:
            await api.call("DELETE", f"/kernel/{kid}")
    print(summary("baseline: HTTP round trip GET / (no auth, no agent)", base))
    print(summary("baseline: execute print(1) via signed REST", rest))
    print(summary("pty keystroke echo (stdin frame -> out frame)", echo))
    met = "met" if percentile(echo, 50) <= ECHO_TARGET_P50_MS else "NOT met"
    print(f"  target p50 <= {ECHO_TARGET_P50_MS:g} ms: {met}")
    print(summary("streamed execute print(1): first output (handshake included)", first))
    print(summary("streamed execute print(1): finished", done))


async def main(args: argparse.Namespace) -> None:
    if args.running:
        await measure(args.n, args.runs, args.warmup)
        return
    with tempfile.TemporaryDirectory(prefix="kraken-stream-") as tmp:
        cluster = Cluster(Path(tmp), args.pg_url, args.redis_url)
        try:
            await cluster.start()
            os.environ.update({k: v for k, v in cluster.client_env().items()
                               if k.startswith("BACKEND_")})
            await measure(args.n, args.runs, args.warmup)
        finally:
            await cluster.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=300, help="keystrokes measured")
    ap.add_argument("--runs", type=int, default=100,
                    help="streamed and REST executes measured (and GET / baselines)")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--running", action="store_true",
                    help="use the cluster in BACKEND_ENDPOINT/_ACCESS_KEY/_SECRET_KEY")
    ap.add_argument("--pg-url", default=os.environ.get(
        "KRAKEN_TEST_PG_URL", "postgresql://kraken:kraken@127.0.0.1:15432/kraken"))
    ap.add_argument("--redis-url", default=os.environ.get(
        "KRAKEN_TEST_REDIS_URL", "redis://127.0.0.1:16379/0"))
    asyncio.run(main(ap.parse_args()))
