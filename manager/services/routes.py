"""The execute hot path's memory: kernel routes cached briefly, query counts batched.

Nothing here writes to the database per call; ``QueryCounter.flush`` runs every
few seconds and adds the counted queries to ``kernels`` and ``keypairs``.
"""
from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from manager.db.tables import kernels, keypairs

log = logging.getLogger(__name__)

ROUTE_TTL = 2.0


@dataclass(frozen=True, slots=True)
class Route:
    """Where a running session lives and who owns it."""

    kernel_id: uuid.UUID
    agent_id: str
    access_key: str


class RouteCache:
    """(caller access key, kernel ident) → Route, for at most ``ttl`` seconds."""

    def __init__(self, ttl: float = ROUTE_TTL) -> None:
        self._ttl = ttl
        self._routes: dict[tuple[str, str], tuple[float, Route]] = {}
        self._by_kernel: dict[uuid.UUID, set[tuple[str, str]]] = {}  # for forget()

    def get(self, caller: str, ident: str) -> Route | None:
        hit = self._routes.get((caller, ident))
        if hit is None:
            return None
        if hit[0] < time.monotonic():
            self._drop((caller, ident), hit[1].kernel_id)
            return None
        return hit[1]

    def put(self, caller: str, ident: str, route: Route) -> None:
        if len(self._routes) > 50_000:
            self._routes.clear()
            self._by_kernel.clear()
        self._routes[(caller, ident)] = (time.monotonic() + self._ttl, route)
        self._by_kernel.setdefault(route.kernel_id, set()).add((caller, ident))

    def forget(self, kernel_id: uuid.UUID) -> None:
        for key in self._by_kernel.pop(kernel_id, ()):
            self._routes.pop(key, None)

    def _drop(self, key: tuple[str, str], kernel_id: uuid.UUID) -> None:
        del self._routes[key]
        keys = self._by_kernel.get(kernel_id)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_kernel[kernel_id]


class QueryCounter:
    """Executed-query counts kept in memory and flushed to PostgreSQL in batches."""

    def __init__(self) -> None:
        self._kernels: Counter[uuid.UUID] = Counter()
        self._keys: Counter[str] = Counter()

    def count(self, route: Route) -> None:
        self._kernels[route.kernel_id] += 1
        self._keys[route.access_key] += 1

    def pending(self, kernel_id: uuid.UUID) -> int:
        return self._kernels.get(kernel_id, 0)

    async def flush(self, engine: AsyncEngine) -> None:
        if not self._kernels and not self._keys:
            return
        by_kernel, by_key = self._kernels, self._keys
        self._kernels, self._keys = Counter(), Counter()
        try:
            async with engine.begin() as conn:
                await _add(conn, kernels, kernels.c.id, by_kernel, last_used=False)
                await _add(conn, keypairs, keypairs.c.access_key, by_key, last_used=True)
        except Exception:
            self._kernels.update(by_kernel)
            self._keys.update(by_key)
            raise


async def _add(conn: AsyncConnection, table: sa.Table, key: sa.Column[Any],
               counts: Counter[Any], last_used: bool) -> None:
    values: dict[str, object] = {"num_queries": table.c.num_queries + sa.bindparam("n")}
    if last_used:
        values["last_used"] = sa.func.now()
    stmt = sa.update(table).where(key == sa.bindparam("k")).values(**values)
    stmt = stmt.execution_options(synchronize_session=False)
    await conn.execute(stmt, [{"k": k, "n": n} for k, n in counts.items()])
