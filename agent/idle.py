"""Reaping idle kernels: no execute, upload or terminal activity for ``idle_timeout``.

The manager passes the timeout in ``CreateKernel.idle_timeout`` (its config
``sessions.idle_timeout``); the agent keeps it in a container label so a restarted
agent still honours it. A kernel with a run in progress counts as active. A reaped
kernel is destroyed like any other and reported with
``KernelTerminated(reason="idle-timeout")``.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from agent.kernels import Kernel, KernelRegistry
from common.errors import KrakenError
from common.msg_agent import KernelTerminated

log = logging.getLogger(__name__)

CHECK_PERIOD = 1.0
IDLE_REASON = "idle-timeout"

EventSink = Callable[[KernelTerminated], Awaitable[None]]


def idle_kernels(kernels: Iterable[Kernel], now: float) -> list[Kernel]:
    """The kernels whose idle time ran out; a kernel running code is touched instead."""
    out = []
    for kernel in kernels:
        if kernel.idle_timeout <= 0 or kernel.busy:
            continue
        if kernel.runs.active_run_id is not None:
            kernel.touch()
        elif now - kernel.last_active >= kernel.idle_timeout:
            out.append(kernel)
    return out


async def reap_once(registry: KernelRegistry, notify: EventSink) -> list[str]:
    """Destroy every idle kernel and report it; returns their ids."""
    reaped = []
    for kernel in idle_kernels(registry.all(), time.monotonic()):
        log.info("kernel %s idle for %.0f s; destroying it", kernel.kernel_id,
                 kernel.idle_timeout)
        try:
            await registry.destroy(kernel.kernel_id)
        except KrakenError as e:
            log.warning("cannot destroy idle kernel %s: %s", kernel.kernel_id, e)
            continue
        reaped.append(kernel.kernel_id)
        await notify(KernelTerminated(kernel_id=kernel.kernel_id, reason=IDLE_REASON))
    return reaped


async def reap_loop(registry: KernelRegistry, notify: EventSink,
                    period: float = CHECK_PERIOD) -> None:
    while True:
        await asyncio.sleep(period)
        try:
            await reap_once(registry, notify)
        except Exception:
            log.exception("idle kernel check failed")
