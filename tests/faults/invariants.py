"""What must hold once the cluster has converged after a fault (issue 8).

- no kernel container of the suite's agents without a live session row (this covers
  "no session marked lost/ERROR whose container survived");
- no session in a non-final state past its deadline;
- the capacity the database counts on each agent equals what the agent reports;
- every suite agent is ALIVE again.
Client calls are checked by the tests themselves (tests/faults/client.py).
"""
from __future__ import annotations

import time
from collections import defaultdict

from common.slots import ResourceSlot
from tests.faults.cluster import DEADLINES as STATE_DEADLINES
from tests.faults.cluster import SWEEP_INTERVAL, FaultCluster

GRACE = 5.0  # seconds for a sweep's work to land
# status → seconds it may last: the sweep settles a session at its deadline, or at twice
# it when the agent still reports the work under way (docs/reconciliation.md)
DEADLINES = {status: 2 * limit + SWEEP_INTERVAL + GRACE
             for status, limit in STATE_DEADLINES.items()}
CONVERGE_LIMIT = 30.0
FINAL = ("TERMINATED", "ERROR", "CANCELLED")


def leaked_containers(cluster: FaultCluster) -> list[str]:
    """Containers whose kernel has no live session row: "cid kernel status/reason"."""
    rows = cluster.sql_rows("SELECT id::text AS id, status, status_info FROM kernels")
    status = {r["id"]: f"{r['status']}/{r['status_info']}" for r in rows}
    live = {r["id"] for r in rows if r["status"] not in FINAL}
    return [f"{cid} kernel={kid} session={status.get(kid, 'no row')}"
            for cid, kid in cluster.kernel_containers().items() if kid not in live]


def stuck_sessions(cluster: FaultCluster) -> list[str]:
    rows = cluster.sql_rows(
        "SELECT id::text AS id, status, status_info, "
        "extract(epoch FROM now() - status_changed) AS age FROM kernels "
        "WHERE status = ANY($1::text[])", list(DEADLINES))
    return [f"{r['id']} {r['status']} for {float(r['age']):.0f} s ({r['status_info']})"
            for r in rows if float(r["age"]) > DEADLINES[r["status"]]]


def capacity_mismatches(cluster: FaultCluster) -> list[str]:
    counted: dict[str, ResourceSlot] = defaultdict(ResourceSlot)
    for r in cluster.sql_rows("SELECT agent_id, slots FROM kernels WHERE agent_id IS NOT NULL "
                              "AND NOT (status = ANY($1::text[]))", list(FINAL)):
        counted[r["agent_id"]] = counted[r["agent_id"]] + _slots(r["slots"])
    found = []
    for r in cluster.sql_rows("SELECT id, status, occupied_slots FROM agents "
                              "WHERE id = ANY($1::text[])", list(cluster.agent_ids.values())):
        reported = _slots(r["occupied_slots"])
        if reported != counted[r["id"]]:
            found.append(f"agent {r['id']} ({r['status']}) reports {reported.to_wire()}, "
                         f"the database counts {counted[r['id']].to_wire()}")
    return found


def agents_not_alive(cluster: FaultCluster) -> list[str]:
    rows = cluster.sql_rows("SELECT id, status FROM agents WHERE id = ANY($1::text[])",
                            list(cluster.agent_ids.values()))
    alive = {r["id"] for r in rows if r["status"] == "ALIVE"}
    return [f"agent {a} is not ALIVE" for a in cluster.agent_ids.values() if a not in alive]


def _slots(raw: object) -> ResourceSlot:
    import json
    data = json.loads(raw) if isinstance(raw, str) else raw
    return ResourceSlot.from_wire(data)  # type: ignore[arg-type]


def violations(cluster: FaultCluster) -> list[str]:
    return [*leaked_containers(cluster), *stuck_sessions(cluster),
            *capacity_mismatches(cluster), *agents_not_alive(cluster)]


def converge(cluster: FaultCluster, limit: float = CONVERGE_LIMIT) -> float:
    """Wait until every invariant holds; returns the seconds it took, or fails listing
    what still does not hold after ``limit``."""
    t0 = time.monotonic()
    found: list[str] = []
    while time.monotonic() - t0 < limit:
        try:
            found = violations(cluster)
        except OSError as e:  # the database is restarting
            found = [f"cannot check: {e!r}"]
        if not found:
            return time.monotonic() - t0
        time.sleep(0.5)
    raise AssertionError(f"not converged after {limit:.0f} s:\n  " + "\n  ".join(found))


class Expectations:
    """Collects every unmet expectation of a scenario, so one failure report lists all
    the symptoms instead of the first."""

    def __init__(self) -> None:
        self.unmet: list[str] = []

    def __call__(self, ok: object, what: str) -> bool:
        if not ok:
            self.unmet.append(what)
        return bool(ok)

    def converged(self, cluster: FaultCluster, limit: float = CONVERGE_LIMIT) -> None:
        try:
            converge(cluster, limit)
        except AssertionError as e:
            self.unmet.append(str(e))

    def verify(self) -> None:
        assert not self.unmet, "\n- " + "\n- ".join(self.unmet)
