"""Usage records and the event log (seed 003), computed from what is already stored:
the sessions (``kernels``: slots, last stats) and their transitions (``kernel_events``).

A session holds its slots from its first placement (the first transition to SCHEDULED,
PREPARING or RUNNING) until it ends (``terminated_at``), or until now while it lives.
Slot-seconds are that allocation clipped to the asked time range, times each slot
(cpu: core-seconds, mem: byte-seconds, cuda.*: device-seconds). CPU time and memory
peak are the session's last stats (``cpu_used`` ms, ``mem_max_bytes``): live stats
while it runs (manager.live_stats), the final ones once destroyed.

Paging: usage records by ``offset`` (ordered by creation, then id), the event log by
``after`` (an event id: events are numbered in the order they were stored).
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from common.slots import slot_floats
from common.status import FINAL_STATUSES
from manager.db.tables import kernel_events as ev
from manager.db.tables import kernels as k
from manager.replica import public_info

MAX_LIMIT = 1000
PLACED = ("SCHEDULED", "PREPARING", "RUNNING")
_FINAL = ", ".join(f"'{s.value}'" for s in sorted(FINAL_STATUSES))


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open time range [since, until); either end may be open."""

    since: datetime | None = None
    until: datetime | None = None


# one row per session whose allocation or creation overlaps the window
_ALLOCATIONS = f"""
WITH s AS (
  SELECT k.id, k.session_name, k.access_key, k.agent_id, k.image, k.status, k.slots,
         k.last_stat, k.created_at, k.terminated_at,
         (SELECT min(e.at) FROM kernel_events e WHERE e.kernel_id = k.id
            AND e.to_status IN {PLACED!r}) AS started_at,
         CASE WHEN k.status IN ({_FINAL}) THEN COALESCE(k.terminated_at, k.status_changed)
              ELSE now() END AS ended_at
  FROM kernels k
  WHERE (CAST(:access_key AS text) IS NULL OR k.access_key = :access_key)
    AND (CAST(:until AS timestamptz) IS NULL OR k.created_at < :until)
), a AS (
  SELECT s.*, GREATEST(0, EXTRACT(EPOCH FROM
           LEAST(s.ended_at, COALESCE(CAST(:until AS timestamptz), s.ended_at))
         - GREATEST(s.started_at, COALESCE(CAST(:since AS timestamptz), s.started_at))
         )) AS seconds
  FROM s
  WHERE CAST(:since AS timestamptz) IS NULL OR s.ended_at > :since
)
"""


def _stat_sql(key: str) -> str:
    """A stats value as a bigint; 0 when absent or not a plain integer (agent-reported)."""
    value = f"(a.last_stat ->> '{key}')"
    return f"CASE WHEN {value} ~ '^[0-9]{{1,18}}$' THEN {value}::bigint ELSE 0 END"


def _params(access_key: str | None, window: Window) -> dict[str, Any]:
    return {"access_key": access_key, "since": window.since, "until": window.until}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _stat(row: Any, key: str) -> int:
    try:
        return int((row.last_stat or {}).get(key) or 0)
    except (TypeError, ValueError):
        return 0


def _record(row: Any) -> dict[str, Any]:
    seconds = float(row.seconds or 0)
    slots = slot_floats(row.slots)
    return {
        "session_id": str(row.id), "session_name": row.session_name,
        "access_key": row.access_key, "agent_id": row.agent_id, "image": row.image,
        "status": row.status, "slots": slots, "created_at": _iso(row.created_at),
        "started_at": _iso(row.started_at), "terminated_at": _iso(row.terminated_at),
        "allocated_seconds": round(seconds, 3),
        "slot_seconds": {k: round(v * seconds, 3) for k, v in slots.items()},
        "cpu_time_ms": _stat(row, "cpu_used"), "mem_peak_bytes": _stat(row, "mem_max_bytes"),
    }


async def usage_records(engine: AsyncEngine, access_key: str | None, window: Window,
                        limit: int, offset: int) -> dict[str, Any]:
    """One record per session, oldest first; ``next_offset`` when there are more."""
    stmt = sa.text(_ALLOCATIONS + "SELECT * FROM a ORDER BY created_at, id "
                   "LIMIT :limit OFFSET :offset")
    params = dict(_params(access_key, window), limit=limit + 1, offset=offset)
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt, params)).all()
    more = len(rows) > limit
    return {"records": [_record(r) for r in rows[:limit]],
            "next_offset": offset + limit if more else None}


async def usage_summary(engine: AsyncEngine, access_key: str | None, window: Window
                        ) -> list[dict[str, Any]]:
    """Per keypair: sessions, slot-seconds per slot, CPU time and the memory peak."""
    stmt = sa.text(_ALLOCATIONS + f"""
, per AS (
  SELECT a.access_key, j.key, sum(j.value::numeric * a.seconds) AS total
  FROM a, jsonb_each_text(a.slots) j GROUP BY a.access_key, j.key
), slots AS (
  SELECT access_key, jsonb_object_agg(key, total) AS slot_seconds FROM per
  GROUP BY access_key
)
SELECT a.access_key, count(*) AS sessions, sum(a.seconds) AS allocated_seconds,
       sum({_stat_sql("cpu_used")}) AS cpu_time_ms,
       max({_stat_sql("mem_max_bytes")}) AS mem_peak_bytes,
       s.slot_seconds
FROM a LEFT JOIN slots s ON s.access_key = a.access_key
GROUP BY a.access_key, s.slot_seconds ORDER BY a.access_key
""")
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt, _params(access_key, window))).all()
    return [{"access_key": r.access_key, "sessions": int(r.sessions),
             "allocated_seconds": round(float(r.allocated_seconds or 0), 3),
             "slot_seconds": {k: round(float(v), 3) for k, v in (r.slot_seconds or {}).items()},
             "cpu_time_ms": int(r.cpu_time_ms or 0),
             "mem_peak_bytes": int(r.mem_peak_bytes or 0)} for r in rows]


async def event_log(engine: AsyncEngine, access_key: str | None, window: Window,
                    session_id: uuid.UUID | None, after: int, limit: int,
                    internal: bool = False) -> dict[str, Any]:
    """Stored transitions, oldest first, from the event after ``after``; reasons as
    users see them unless ``internal`` (admins: with the replica notes)."""
    stmt = (sa.select(ev.c.id, ev.c.kernel_id, ev.c.from_status, ev.c.to_status,
                      ev.c.reason, ev.c.at, k.c.session_name, k.c.access_key, k.c.agent_id)
            .join(k, k.c.id == ev.c.kernel_id).where(ev.c.id > after)
            .order_by(ev.c.id).limit(limit + 1))
    if access_key is not None:
        stmt = stmt.where(k.c.access_key == access_key)
    if session_id is not None:
        stmt = stmt.where(ev.c.kernel_id == session_id)
    if window.since is not None:
        stmt = stmt.where(ev.c.at >= window.since)
    if window.until is not None:
        stmt = stmt.where(ev.c.at < window.until)
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
    events = [{"id": r.id, "session_id": str(r.kernel_id), "session_name": r.session_name,
               "access_key": r.access_key, "agent_id": r.agent_id,
               "from_status": r.from_status, "to_status": r.to_status,
               "reason": r.reason if internal else public_info(r.reason),
               "at": _iso(r.at)} for r in rows[:limit]]
    return {"events": events, "next_after": events[-1]["id"] if len(rows) > limit else None}
