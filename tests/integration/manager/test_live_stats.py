"""Live stats: an agent's kernel-stats-batch shows up in GraphQL sessions while they
run, only for the agent's own live sessions."""
from __future__ import annotations

from typing import Any

from common.msg_agent import KernelStatsBatch
from manager import live_stats
from manager.api.keys import REGISTRY
from tests.integration.manager.conftest import wait_for

QUERY = "{ compute_sessions { sess_id status cpu_used mem_cur_bytes mem_max_bytes } }"


async def _sessions(harness: Any) -> dict[str, Any]:
    status, body = await harness.call("POST", "/admin/graphql", {"query": QUERY})
    assert status == 200, body
    return {s["sess_id"]: s for s in body["compute_sessions"]}


def _stats(cpu: int, cur: int, peak: int) -> dict[str, int]:
    return {"cpu_used": cpu, "mem_cur_bytes": cur, "mem_max_bytes": peak,
            "net_rx_bytes": 1, "net_tx_bytes": 2}


async def test_batch_shows_current_cpu_and_memory(harness: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(live_stats, "MIN_SPACING", 0.0)
    agent = await harness.agent("agent-1")
    other = await harness.agent("agent-2")
    assert (await harness.create("sess-a"))[0] == 201
    assert (await harness.create("sess-b"))[0] == 201
    rows = {r.session_name: r for r in await harness.sessions()}
    # the batch comes from the agent holding sess-a; sess-b may be on either
    mine = agent if str(rows["sess-a"].id) in agent.kernels else other
    theirs = [r for r in rows.values() if str(r.id) not in mine.kernels]
    before = await _sessions(harness)
    assert before["sess-a"]["mem_cur_bytes"] == 0
    await mine.link.send(KernelStatsBatch(stats={
        str(rows["sess-a"].id): _stats(1500, 40 << 20, 50 << 20),
        # a hostile agent: other agents' sessions, junk ids and values are ignored
        **{str(r.id): _stats(9, 9, 9) for r in theirs},
        "not-a-uuid": _stats(1, 1, 1)}))
    got = await wait_for(lambda: _cpu_of(harness, "sess-a", 1500), what="stats of sess-a")
    assert (got["mem_cur_bytes"], got["mem_max_bytes"]) == (40 << 20, 50 << 20)
    after = await _sessions(harness)
    for r in theirs:
        assert after[r.session_name]["cpu_used"] == 0
    # a later sample lowers the current memory, never the peak
    await mine.link.send(KernelStatsBatch(stats={
        str(rows["sess-a"].id): _stats(2500, 10 << 20, 10 << 20)}))
    got = await wait_for(lambda: _cpu_of(harness, "sess-a", 2500), what="second sample")
    assert (got["mem_cur_bytes"], got["mem_max_bytes"]) == (10 << 20, 50 << 20)


async def _cpu_of(harness: Any, name: str, cpu: int) -> Any:
    s = (await _sessions(harness))[name]
    return s if s["cpu_used"] == cpu else None


async def test_batches_closer_than_the_spacing_are_dropped(harness: Any) -> None:
    await harness.agent("agent-1")
    assert (await harness.create("sess-a"))[0] == 201
    (row,) = await harness.sessions()
    registry = harness.app[REGISTRY]
    stats = live_stats.LiveStats(registry)
    peer = registry.peer_of("agent-1")
    for cpu in (100, 200):  # the second follows the first at once: dropped
        await stats.on_batch(peer, KernelStatsBatch(stats={str(row.id): _stats(cpu, 1, 1)}))
    assert (await _sessions(harness))["sess-a"]["cpu_used"] == 100


def test_clean_keeps_known_integer_stats_only() -> None:
    kid = "6f1c1a4e-0000-4000-8000-000000000001"
    assert live_stats.clean({kid: {"cpu_used": 5, "evil": 1, "mem_cur_bytes": "7",
                                   "mem_max_bytes": -3, "net_rx_bytes": True},
                             "x": {"cpu_used": 1}, kid.upper(): "junk"}) == {
        kid: {"cpu_used": 5, "mem_max_bytes": 0}}
    assert live_stats.clean(["not", "a", "map"]) == {}
