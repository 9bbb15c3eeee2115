"""Hung runners: every kernel's runner is pinged on its control socket.

The control socket is served by the runner's I/O thread, apart from the main thread that
runs user code, so a runner answers while a run sleeps, waits or computes in Python; only
a runner that is stopped (SIGSTOP), deadlocked or gone stays silent — or one whose user
code sits in a single C call that holds the GIL (``sum(range(10**10))``). To tell those
apart, a runner silent for ``runner.unresponsive_timeout`` seconds is judged by its
container's CPU time over the next ping interval: a container that is computing is left
alone; one that stays still is hung. A hung kernel's container is removed at once, its
runs end with a clear note, and every manager gets
``KernelTerminated(reason="runner-unresponsive")``.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from agent.config import RunnerConfig
from agent.kernels import Kernel, KernelRegistry
from common.errors import KrakenError
from common.msg_agent import KernelTerminated
from common.msg_runner import Ping

log = logging.getLogger(__name__)

REASON = "runner-unresponsive"
BUSY_CPU_SHARE = 0.02  # a stopped runner and an idle init use none

EventSink = Callable[[KernelTerminated], Awaitable[None]]


async def ping(kernel: Kernel, timeout: float) -> None:
    """One ping; an answer moves ``kernel.last_pong`` on."""
    try:
        await kernel.runner.control(Ping(), timeout)
    except KrakenError:
        return
    kernel.last_pong = time.monotonic()
    kernel.silent_cpu = None


def silent(kernels: Iterable[Kernel], now: float, limit: float) -> list[Kernel]:
    """The kernels whose runner has not answered for ``limit`` seconds (0: never)."""
    if limit <= 0:
        return []
    return [k for k in kernels if not k.busy and now - k.last_pong >= limit]


def judge(before: tuple[float, int] | None, now: tuple[float, int] | None) -> str:
    """A silent runner, from two (time, container CPU ms) samples: "wait" (not two
    samples yet), "computing" (≥ 2 % of a CPU used between them) or "hung"."""
    if before is None or now is None:
        return "wait"
    elapsed_ms = max((now[0] - before[0]) * 1000, 1.0)
    return "computing" if now[1] - before[1] >= BUSY_CPU_SHARE * elapsed_ms else "hung"


async def _is_hung(registry: KernelRegistry, kernel: Kernel) -> bool:
    cpu = await registry.cpu_used(kernel.kernel_id)
    sample = (time.monotonic(), cpu) if cpu is not None else None
    verdict = judge(kernel.silent_cpu, sample)
    if sample is not None and verdict != "hung":
        kernel.silent_cpu = sample
    if verdict == "computing":
        log.info("runner of kernel %s is silent but its container computes; left alone",
                 kernel.kernel_id)
    return verdict == "hung"


async def check_once(registry: KernelRegistry, notify: EventSink, cfg: RunnerConfig) -> list[str]:
    """Ping every runner once (together), then remove the hung ones; returns their ids."""
    live = [k for k in registry.all() if not k.busy]
    await asyncio.gather(*(ping(k, cfg.ping_interval) for k in live))
    hung = []
    for kernel in silent(registry.all(), time.monotonic(), cfg.unresponsive_timeout):
        if not await _is_hung(registry, kernel):
            continue
        quiet = time.monotonic() - kernel.last_pong
        log.warning("runner of kernel %s silent for %.0f s and idle: removing the kernel",
                    kernel.kernel_id, quiet)
        note = f"the kernel's runner stopped answering ({quiet:.0f} s); the kernel was removed"
        if kernel.busy or kernel not in registry.all():
            continue  # being destroyed or restarted meanwhile
        # tell the managers first: a heartbeat sent while the kill runs no longer lists
        # the kernel, and the manager would otherwise record "container-vanished"
        await notify(KernelTerminated(kernel_id=kernel.kernel_id, reason=REASON))
        if await registry.kill(kernel.kernel_id, note):
            hung.append(kernel.kernel_id)
    return hung


async def watch_loop(registry: KernelRegistry, notify: EventSink, cfg: RunnerConfig) -> None:
    if cfg.unresponsive_timeout <= 0:
        return
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        try:
            await check_once(registry, notify, cfg)
        except Exception:
            log.exception("runner liveness check failed")
        await asyncio.sleep(max(cfg.ping_interval - (loop.time() - started), 0.05))
