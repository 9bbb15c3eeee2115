"""Bounds on concurrent file transfers, per keypair and per agent.

A transfer holds one slot of every key it names (``keypair:<access key>``,
``agent:<agent id>``). A request that finds a key full waits up to ``wait`` seconds,
then fails with 429 ``too-many-transfers`` — the caller's own load, so a retry later
succeeds; other keypairs are not affected. Semaphores exist only while in use.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from common.errors import TooManyTransfers
from manager.config import TransfersConfig


class TransferGate:
    def __init__(self, config: TransfersConfig) -> None:
        self._config = config
        self._slots: dict[str, tuple[asyncio.Semaphore, int]] = {}

    def _limit(self, key: str) -> int:
        return self._config.per_agent if key.startswith("agent:") else self._config.per_keypair

    def _hold(self, key: str) -> asyncio.Semaphore:
        sem, users = self._slots.get(key) or (asyncio.Semaphore(self._limit(key)), 0)
        self._slots[key] = (sem, users + 1)
        return sem

    def _release(self, key: str) -> None:
        sem, users = self._slots[key]
        if users <= 1:
            del self._slots[key]
        else:
            self._slots[key] = (sem, users - 1)

    @contextlib.asynccontextmanager
    async def slot(self, *keys: str) -> AsyncIterator[None]:
        """Hold one transfer slot of each key (acquired in sorted order)."""
        held: list[asyncio.Semaphore] = []
        keys = tuple(sorted(set(keys)))
        sems = [self._hold(k) for k in keys]
        try:
            for key, sem in zip(keys, sems, strict=True):
                try:
                    async with asyncio.timeout(self._config.wait):
                        await sem.acquire()
                except TimeoutError:
                    raise TooManyTransfers(
                        f"too many file transfers under {key.split(':')[0]} at once "
                        f"(limit {self._limit(key)}); retry shortly") from None
                held.append(sem)
            yield
        finally:
            for sem in held:
                sem.release()
            for key in keys:
                self._release(key)

    def in_use(self) -> int:
        """Keys with a transfer running or waiting (for tests: nothing leaks)."""
        return len(self._slots)
