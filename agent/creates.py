"""Creates in progress, and what may stop them half-way.

A create is a task the ``KernelRegistry`` owns (not the request handler's task), so a
manager link that closes does not cut it in the middle of a Docker call. It checks its
``CreateState`` between steps: a ``DestroyKernel`` for the kernel (``cancel``), a die
event of its container (``died``) or the agent shutting down (``shutdown``) makes it
undo what it did — container, scratch dir, slots — and answer with a clear error.

``Tombstones`` remember the kernel ids destroyed lately, so a ``CreateKernel`` that
arrives after the ``DestroyKernel`` for the same kernel (two manager replicas, a
retried request) is refused instead of leaving a container nobody owns.
"""
from __future__ import annotations

import asyncio
import collections
import time
import uuid
from dataclasses import dataclass, field

from common.errors import (
    AgentUnavailable,
    InvalidAPIParameters,
    KernelCreationCancelled,
    KernelCreationFailed,
)
from common.msg_agent import KernelCreated

CANCELLED = "cancelled"
DIED = "died"
SHUTDOWN = "shutdown"
TOMBSTONE_TTL = 600.0
TOMBSTONE_MAX = 4096


@dataclass
class CreateState:
    """One create under way; ``stop`` resolves with why it must stop (first reason wins)."""

    kernel_id: str
    stop: asyncio.Future[str] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())
    task: asyncio.Task[KernelCreated] | None = None

    def abort(self, reason: str) -> None:
        if not self.stop.done():
            self.stop.set_result(reason)

    def check(self) -> None:
        """Raise the error this create ends with, if something stopped it."""
        if not self.stop.done():
            return
        reason = self.stop.result()
        if reason == CANCELLED:
            raise KernelCreationCancelled(
                f"kernel {self.kernel_id} was destroyed while it was being created")
        if reason == SHUTDOWN:
            raise AgentUnavailable("the agent shut down while creating the kernel; retry")
        raise KernelCreationFailed("the kernel container exited before its runner was ready")


class Tombstones:
    """Kernel ids destroyed in the last ``ttl`` seconds (at most ``limit`` of them)."""

    def __init__(self, ttl: float = TOMBSTONE_TTL, limit: int = TOMBSTONE_MAX) -> None:
        self._ttl = ttl
        self._limit = limit
        self._at: collections.OrderedDict[str, float] = collections.OrderedDict()

    def add(self, kernel_id: str) -> None:
        self._at.pop(kernel_id, None)
        self._at[kernel_id] = time.monotonic()
        self._expire()

    def __contains__(self, kernel_id: object) -> bool:
        self._expire()
        return kernel_id in self._at

    def _expire(self) -> None:
        cutoff = time.monotonic() - self._ttl
        while self._at and (len(self._at) > self._limit
                            or next(iter(self._at.values())) < cutoff):
            self._at.popitem(last=False)


def check_kernel_id(kernel_id: str) -> str:
    try:
        canonical = str(uuid.UUID(kernel_id))
    except (ValueError, TypeError):
        raise InvalidAPIParameters(f"kernel_id {kernel_id!r} is not a UUID") from None
    if canonical != kernel_id:
        raise InvalidAPIParameters(f"kernel_id {kernel_id!r} is not in canonical form")
    return kernel_id


def retrieved(task: asyncio.Task[KernelCreated]) -> None:
    """Done callback: the create's result is consumed even if its request is gone."""
    if not task.cancelled():
        task.exception()
