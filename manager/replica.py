"""Which manager replicas are alive, as PostgreSQL sees it.

Each replica holds, for its whole life, a session-level advisory lock
``(REPLICA_LOCK_CLASS, instance)`` on a connection of its own. A PREPARING, RESTARTING
or TERMINATING session records the replica whose call waits for the agent's reply
(``status_info = "<reason>|owner:<instance>"``); when that replica's lock is gone (the
process was killed, its connection dropped), nobody waits for the reply any more and
reconciliation settles the session at once instead of at its deadline
(docs/reconciliation.md).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)

REPLICA_LOCK_CLASS = 0x4B52  # classid of the advisory locks replicas hold while alive
OWNER_SEP = "|owner:"
CHECK_INTERVAL = 2.0
# other replicas notice a database outage within CHECK_INTERVAL and take their lock
# again a second later: until then, a missing lock proves nothing
TRUST_AFTER = 2 * CHECK_INTERVAL + 2.0


def with_owner(reason: str | None, instance: int) -> str:
    """status_info for a state whose call ``instance`` is waiting on (PREPARING,
    RESTARTING, TERMINATING): the reason, plus who waits."""
    return f"{reason or ''}{OWNER_SEP}{instance}"


def split_owner(info: str | None) -> tuple[str | None, int | None]:
    """(reason, owner instance or None) of a status_info."""
    if info is None or OWNER_SEP not in info:
        return info, None
    reason, _, owner = info.rpartition(OWNER_SEP)
    try:
        return reason or None, int(owner)
    except ValueError:
        return info, None


def public_info(info: str | None) -> str | None:
    """status_info as users see it: who waits on a call is internal bookkeeping."""
    return split_owner(info)[0]


async def live_instances(conn: AsyncConnection) -> set[int]:
    """The instances whose replica holds its lock now (on this database)."""
    rows = await conn.execute(sa.text(
        "SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND classid = :cls AND objsubid = 2 "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    ), {"cls": REPLICA_LOCK_CLASS})
    return {int(r) for r in rows.scalars().all()}


class ReplicaLease:
    """Holds this replica's lock, taking it again after the database comes back."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.instance = secrets.randbelow(2**31 - 2) + 1
        self._engine = engine
        self._task: asyncio.Task[None] | None = None
        self.held = asyncio.Event()
        self._held_since: float | None = None

    def trusted(self) -> bool:
        """Whether the set of live replicas in pg_locks can be believed now: this
        replica has held its own lock long enough for the others to have theirs."""
        return (self._held_since is not None
                and time.monotonic() - self._held_since >= TRUST_AFTER)

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._hold_forever())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _hold_forever(self) -> None:
        while True:
            try:
                async with self._engine.connect() as conn:
                    try:
                        await self._hold(conn)
                    finally:  # never back to the pool still holding the lock
                        with contextlib.suppress(Exception):
                            await conn.invalidate()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.held.clear()
                self._held_since = None
                log.info("replica lease lost (%s); taking it again", type(e).__name__)
            await asyncio.sleep(1.0)

    async def _hold(self, conn: AsyncConnection) -> None:
        await conn.execute(sa.select(sa.func.pg_advisory_lock(
            REPLICA_LOCK_CLASS, self.instance)))
        await conn.commit()
        self.held.set()
        self._held_since = time.monotonic()
        while True:  # notice a dropped connection, then take it again
            await asyncio.sleep(CHECK_INTERVAL)
            await conn.execute(sa.select(1))
            await conn.commit()
