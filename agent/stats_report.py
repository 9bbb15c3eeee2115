"""Live stats: every ``stats.interval`` seconds, the stats of all running kernels in
one ``kernel-stats-batch`` message to each manager replica (not one per kernel).

Samples are taken a few at a time (``stats.concurrency``) so a host with hundreds of
sessions does not open hundreds of Docker stats calls at once; a kernel whose sample
fails or is slow is left out of this round. A round that takes longer than the
interval delays the next one (rounds never overlap).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from agent.kernels import KernelRegistry
from common.errors import KrakenError
from common.msg_agent import KernelStatsBatch

log = logging.getLogger(__name__)

SAMPLE_TIMEOUT = 5.0  # seconds one kernel's sample may take


async def collect(kernels: KernelRegistry, concurrency: int) -> dict[str, dict[str, int]]:
    """``{kernel_id: stats}`` of the kernels running now."""
    gate = asyncio.Semaphore(max(concurrency, 1))
    out: dict[str, dict[str, int]] = {}

    async def sample(kernel_id: str) -> None:
        async with gate:
            try:
                async with asyncio.timeout(SAMPLE_TIMEOUT):
                    out[kernel_id] = await kernels.stats(kernel_id)
            except (KrakenError, TimeoutError) as e:  # gone meanwhile, or Docker slow
                log.debug("no stats for %s this round: %s", kernel_id, e)

    await asyncio.gather(*(sample(k) for k in kernels.kernel_ids))
    return out


async def report_loop(kernels: KernelRegistry, send: Callable[[KernelStatsBatch], Awaitable[None]],
                      interval: float, concurrency: int) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            stats = await collect(kernels, concurrency)
            if stats:
                await send(KernelStatsBatch(stats=stats))
        except Exception:
            log.exception("a live stats round failed")
