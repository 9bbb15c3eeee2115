"""No N+1: the number of SQL statements does not grow with the number of objects."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from tests.integration.graphql.conftest import gql, insert_sessions, insert_vfolder
from tests.integration.manager.conftest import Harness

QUERY = """{
  compute_sessions(status: "RUNNING") {
    sess_id mem_cur_bytes workers { id }
    keypair { access_key concurrency_used vfolders { name } }
  }
  keypairs { access_key concurrency_used vfolders { name }
             compute_sessions { sess_id keypair { user_id } }
             running: compute_sessions(status: "RUNNING") { sess_id } }
  agents { id used_cpu_slots used_mem_slots mem_cur_bytes }
}"""


@contextmanager
def counting(h: Harness) -> Iterator[list[str]]:
    seen: list[str] = []

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        # skip the app's background loops (heartbeats, liveness: they write or lock) and
        # the signature check's keypair lookup (cached for 2 s, so it comes and goes)
        text = statement.lstrip().upper()
        if text.startswith("SELECT") and not text.startswith("SELECT 1") \
                and "FOR UPDATE" not in text and "KEYPAIRS.ACCESS_KEY = " not in text:
            seen.append(statement)

    sync = h.engine.sync_engine
    event.listen(sync, "before_cursor_execute", on_execute)
    try:
        yield seen
    finally:
        event.remove(sync, "before_cursor_execute", on_execute)


async def _statements(h: Harness, admin: tuple[str, str]) -> tuple[int, Any]:
    with counting(h) as seen:
        status, data = await gql(h, QUERY, keys=admin)
    assert status == 200, data
    return len(seen), data


async def test_gql_thousand_sessions_bounded_statements(harness: Harness) -> None:
    h = harness
    admin = await h.keypair(is_admin=True)
    fake = await h.agent()
    fake.stop_heartbeats()  # it holds none of the rows below: no reconciliation, please
    await insert_sessions(h, h.access_key, 2, agent_id="agent-1")
    await insert_vfolder(h, h.access_key, "v")
    small, _ = await _statements(h, admin)
    for i in range(10):
        key, _ = await h.keypair(user_id=f"user{i}")
        await insert_sessions(h, key, 100, agent_id="agent-1", prefix=f"k{i}-")
        await insert_vfolder(h, key, f"v{i}")
    large, data = await _statements(h, admin)
    assert len(data["compute_sessions"]) == 1002
    assert all(s["keypair"]["access_key"] for s in data["compute_sessions"])
    assert data["agents"][0]["used_cpu_slots"] == 1002.0
    # batches may split across event-loop ticks, but never grow with the row count
    assert small <= 12 and large <= 12, (small, large)
