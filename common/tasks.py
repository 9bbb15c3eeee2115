"""Background tasks an owner keeps in a set until they finish (so they are not garbage
collected mid-flight and can be cancelled together at close)."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable


def spawn_into(tasks: set[asyncio.Task[None]], coro: Awaitable[None],
               log: logging.Logger | None = None, what: str = "task") -> asyncio.Task[None]:
    """Start ``coro`` as a task kept in ``tasks`` until it ends; with ``log``, a task that
    failed is logged as ``what`` failed (a failure is never dropped silently)."""
    task: asyncio.Task[None] = asyncio.ensure_future(coro)
    tasks.add(task)

    def reaped(done: asyncio.Task[None]) -> None:
        tasks.discard(done)
        if log is not None and not done.cancelled() and done.exception() is not None:
            log.warning("%s failed", what, exc_info=done.exception())

    task.add_done_callback(reaped)
    return task
