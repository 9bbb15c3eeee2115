"""Usage records (slots × time, CPU time, memory peak) and the event log, per session
and per keypair, with time ranges and paging; a keypair sees only its own."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from manager.db.tables import kernel_events, kernels

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
GIB = 2**30


def _q(path: str, **params: Any) -> str:
    """``path`` with a query string the signature and the server read alike (no
    percent-escapes: times are written with ``Z``)."""
    return path + "?" + "&".join(f"{k}={v}" for k, v in params.items())


def _z(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def _finished_session(harness: Any, access_key: str, name: str, start: datetime,
                            seconds: float, cpu: float = 2, cpu_ms: int = 7000,
                            peak: int = 3 * GIB) -> uuid.UUID:
    """A session placed at ``start`` that ran ``seconds`` and ended, as stored."""
    kid = uuid.uuid4()
    end = start + timedelta(seconds=seconds)
    async with harness.engine.begin() as conn:
        await conn.execute(kernels.insert().values(
            id=kid, session_name=name, access_key=access_key, lang="python",
            image="kraken/python:latest", agent_id="agent-x", status="TERMINATED",
            status_changed=end, created_at=start - timedelta(seconds=5), terminated_at=end,
            slots={"cpu": str(cpu), "mem": str(GIB)},
            last_stat={"cpu_used": cpu_ms, "mem_max_bytes": peak}))
        steps = [(None, "PENDING", start - timedelta(seconds=5)), ("PENDING", "SCHEDULED", start),
                 ("SCHEDULED", "PREPARING", start), ("PREPARING", "RUNNING", start),
                 ("RUNNING", "TERMINATED", end)]
        await conn.execute(kernel_events.insert(), [
            {"kernel_id": kid, "from_status": f, "to_status": t, "at": at, "reason": None}
            for f, t, at in steps])
    return kid


async def test_records_clip_slot_seconds_to_the_range(harness: Any) -> None:
    key = harness.access_key
    await _finished_session(harness, key, "sess-a", T0, 100)
    status, body = await harness.call("GET", "/usage")
    assert status == 200, body
    (rec,) = body["records"]
    assert rec["allocated_seconds"] == 100 and rec["slot_seconds"]["cpu"] == 200
    assert rec["slot_seconds"]["mem"] == 100 * GIB
    assert (rec["cpu_time_ms"], rec["mem_peak_bytes"]) == (7000, 3 * GIB)
    since = _z(T0 + timedelta(seconds=60))
    status, body = await harness.call("GET", _q("/usage", since=since))
    assert status == 200, body
    assert body["records"][0]["allocated_seconds"] == 40, body
    until = _z(T0 - timedelta(seconds=60))
    status, body = await harness.call("GET", _q("/usage", until=until))
    assert body["records"] == []
    status, body = await harness.call("GET", _q("/usage", since="yesterday"))
    assert status == 400, body


async def test_keypairs_see_their_own_and_admins_all(harness: Any) -> None:
    other = await harness.keypair()
    admin = await harness.keypair(is_admin=True)
    await _finished_session(harness, harness.access_key, "sess-mine", T0, 10)
    await _finished_session(harness, other[0], "sess-theirs", T0, 30, cpu=1, peak=GIB)
    await _finished_session(harness, other[0], "sess-theirs2", T0, 20, cpu=1, peak=2 * GIB)
    status, body = await harness.call("GET", "/usage", keys=other)
    assert {r["session_name"] for r in body["records"]} == {"sess-theirs", "sess-theirs2"}
    status, body = await harness.call("GET", "/admin/usage", keys=other)
    assert status == 403, body
    status, body = await harness.call("GET", "/admin/usage/summary", keys=admin)
    assert status == 200, body
    by = {s["access_key"]: s for s in body["keypairs"]}
    theirs = by[other[0]]
    assert (theirs["sessions"], theirs["allocated_seconds"]) == (2, 50)
    assert theirs["slot_seconds"]["cpu"] == 50 and theirs["mem_peak_bytes"] == 2 * GIB
    assert theirs["cpu_time_ms"] == 14000
    assert by[harness.access_key]["slot_seconds"]["cpu"] == 20
    status, body = await harness.call("GET", _q("/admin/usage/summary",
                                                access_key=harness.access_key), keys=admin)
    assert [s["access_key"] for s in body["keypairs"]] == [harness.access_key]


async def test_records_page_by_offset(harness: Any) -> None:
    for i in range(5):
        await _finished_session(harness, harness.access_key, f"sess-{i}",
                                T0 + timedelta(minutes=i), 10)
    names, offset = [], 0
    while offset is not None:
        status, body = await harness.call("GET", _q("/usage", limit=2, offset=offset))
        assert status == 200 and len(body["records"]) <= 2, body
        names += [r["session_name"] for r in body["records"]]
        offset = body["next_offset"]
    assert names == [f"sess-{i}" for i in range(5)]


async def test_event_log_of_a_real_session(harness: Any) -> None:
    await harness.agent("agent-1")
    other = await harness.keypair()
    admin = await harness.keypair(is_admin=True)
    assert (await harness.create("sess-ev"))[0] == 201
    assert (await harness.call("DELETE", "/kernel/sess-ev"))[0] == 200
    seen, after = [], 0
    while after is not None:
        status, body = await harness.call("GET", _q("/events", limit=2, after=after))
        assert status == 200, body
        seen += [e["to_status"] for e in body["events"]]
        after = body["next_after"]
    assert seen == ["PENDING", "SCHEDULED", "PREPARING", "RUNNING", "TERMINATING",
                    "TERMINATED"]
    status, body = await harness.call("GET", "/events", keys=other)
    assert body["events"] == []
    (row,) = await harness.sessions()
    status, body = await harness.call("GET", _q("/admin/events", session_id=str(row.id),
                                                limit=1000), keys=admin)
    assert [e["to_status"] for e in body["events"]] == seen
    future = _z(datetime.now(UTC) + timedelta(hours=1))
    status, body = await harness.call("GET", _q("/events", since=future))
    assert body["events"] == []
    # the destroy's final stats are the session's usage
    status, body = await harness.call("GET", "/usage")
    (rec,) = body["records"]
    assert rec["cpu_time_ms"] == 1234 and rec["status"] == "TERMINATED"
    assert rec["allocated_seconds"] > 0
