"""The pure queue planner: FIFO order, DRF fairness, head of line, groups, priority."""
from __future__ import annotations

import random

from common.ids import AgentId
from manager.queueplan import QueuedSession, plan
from manager.scheduler import AgentSnapshot, ClusterView, PlacementRequest, schedule

IMG = "kraken/python:latest"
GIB = float(2**30)


def agent(name: str, cpu: float, mem: float = 64 * GIB, used_cpu: float = 0,
          group: str = "default") -> AgentSnapshot:
    return AgentSnapshot(AgentId(name), {"cpu": cpu, "mem": mem},
                         {"cpu": used_cpu, "mem": 0.0}, frozenset({IMG}), group)


def queued(key: str, seq: int, cpu: float, owner: str = "AK1", priority: int = 0,
           group: str = "default", image: str = IMG) -> QueuedSession:
    return QueuedSession(key, owner, PlacementRequest(image, {"cpu": cpu, "mem": GIB}, group),
                         seq, priority)


def keys(placed: list[tuple[QueuedSession, AgentId]]) -> list[str]:
    return [str(q.key) for q, _ in placed]


def test_fifo_places_in_arrival_order_until_full() -> None:
    queue = [queued(f"s{i}", i, 1) for i in (3, 1, 2, 0)]
    placed = plan(queue, [agent("a", 2)], "fifo")
    assert keys(placed) == ["s0", "s1"]


def test_fifo_head_of_line_blocks_a_later_small_request() -> None:
    queue = [queued("big", 0, 3), queued("small", 1, 1)]
    assert plan(queue, [agent("a", 4, used_cpu=2)], "fifo") == []
    # once room for the head frees, both go in order
    assert keys(plan(queue, [agent("a", 4), agent("b", 1)], "fifo")) == ["big", "small"]


def test_a_request_no_agent_could_ever_hold_does_not_block() -> None:
    queue = [queued("huge", 0, 64), queued("other-image", 1, 1, image="x:1"),
             queued("small", 2, 1)]
    assert keys(plan(queue, [agent("a", 4)], "fifo")) == ["small"]


def test_one_pass_never_overfills_an_agent() -> None:
    queue = [queued(f"s{i}", i, 1) for i in range(10)]
    placed = plan(queue, [agent("a", 3), agent("b", 2)], "fifo")
    assert len(placed) == 5
    assert sorted(str(a) for _, a in placed).count("a") == 3


def test_priority_goes_first_and_blocks_lower_tiers() -> None:
    queue = [queued("old", 0, 1), queued("moved", 5, 1, priority=1)]
    assert keys(plan(queue, [agent("a", 1)], "fifo")) == ["moved"]
    queue = [queued("small", 0, 1), queued("moved-big", 1, 4, priority=1)]
    assert plan(queue, [agent("a", 4, used_cpu=1)], "fifo") == []


def test_drf_serves_the_smallest_dominant_share_first() -> None:
    # AK1 queued many first; AK2 one later: DRF alternates, FIFO would serve AK1 only
    queue = [queued(f"a{i}", i, 1, owner="AK1") for i in range(4)]
    queue.append(queued("b0", 10, 1, owner="AK2"))
    assert keys(plan(queue, [agent("x", 2)], "fifo")) == ["a0", "a1"]
    assert keys(plan(queue, [agent("x", 2)], "drf")) == ["a0", "b0"]


def test_drf_counts_what_keypairs_already_hold() -> None:
    queue = [queued("a0", 0, 1, owner="AK1"), queued("b0", 1, 1, owner="AK2")]
    held = {("default", "AK1"): {"cpu": 3.0}}
    placed = plan(queue, [agent("x", 8, used_cpu=7)], "drf", held)
    assert keys(placed) == ["b0"]  # AK1 holds 3/8 cpu, AK2 nothing: AK2 first, then full


def test_drf_dominant_share_is_the_largest_over_slots() -> None:
    agents = [AgentSnapshot(AgentId("x"), {"cpu": 10, "mem": 20 * GIB},
                            {"cpu": 0, "mem": 0}, frozenset({IMG}))]
    mem_heavy = QueuedSession("m", "AK1", PlacementRequest(IMG, {"cpu": 1, "mem": 6 * GIB}), 0)
    cpu_light = [QueuedSession(f"c{i}", "AK2", PlacementRequest(IMG, {"cpu": 2, "mem": GIB}),
                               i + 1) for i in range(4)]
    more_mem = QueuedSession("m2", "AK1", PlacementRequest(IMG, {"cpu": 1, "mem": GIB}), 9)
    placed = keys(plan([mem_heavy, *cpu_light, more_mem], agents, "drf"))
    # after "m" AK1's dominant share is 0.3 (mem) though it holds 0.1 of the cpu; AK2's
    # grows by 0.2 per session (cpu): AK2 goes until its share passes 0.3, then "m2"
    assert placed == ["m", "c0", "c1", "m2", "c2", "c3"]


def test_drf_head_of_line_blocks_other_keypairs() -> None:
    queue = [queued("b-big", 0, 4, owner="AK2"), queued("a-small", 1, 1, owner="AK1")]
    held = {("default", "AK1"): {"cpu": 2.0}}
    # AK2 holds nothing: its big head goes first, does not fit, and nobody overtakes it
    assert plan(queue, [agent("x", 4, used_cpu=2)], "drf", held) == []


def test_groups_are_placed_apart_with_their_own_policy() -> None:
    agents = [agent("g1", 2, group="gpu"), agent("d1", 2)]
    queue = [queued(f"a{i}", i, 1, owner="AK1", group="gpu") for i in range(3)]
    queue += [queued("b0", 9, 1, owner="AK2", group="gpu"), queued("d", 10, 2)]
    policies = {"gpu": "drf", "default": "fifo"}
    placed = plan(queue, agents, lambda g: policies[g])  # type: ignore[arg-type,return-value]
    assert sorted(keys(placed)) == ["a0", "b0", "d"]
    assert {str(q.key): str(a) for q, a in placed}["d"] == "d1"
    assert plan([queued("lost", 0, 1, group="nobody")], agents, "fifo") == []


def test_many_agents_and_sessions_keep_fifo_and_capacity() -> None:
    rng = random.Random(3)
    agents = [agent(f"a{i:05d}", rng.choice([2, 4, 8])) for i in range(2000)]
    capacity = sum(a.capacity["cpu"] for a in agents)
    queue = [queued(f"s{i:05d}", i, rng.choice([0.5, 1, 2]), owner=f"K{i % 7}")
             for i in range(10000)]
    placed = plan(queue, agents, "fifo")
    assert keys(placed) == [f"s{i:05d}" for i in range(len(placed))]  # a prefix, in order
    per_agent: dict[str, float] = {}
    for q, a in placed:
        per_agent[a] = per_agent.get(a, 0.0) + q.request.slots["cpu"]
    assert all(per_agent[a.agent_id] <= a.capacity["cpu"] + 1e-9 for a in agents
               if a.agent_id in per_agent)
    assert sum(per_agent.values()) > 0.9 * capacity


def test_each_placement_is_the_schedulers_best_fit_at_that_moment() -> None:
    rng = random.Random(11)
    agents = [AgentSnapshot(AgentId(f"a{i:03d}"), {"cpu": rng.choice([2.0, 4.0, 8.0]),
                                                   "mem": rng.choice([4, 8]) * GIB},
                            {"cpu": rng.random() * 2, "mem": 0.0}, frozenset({IMG}))
              for i in range(200)]
    queue = [QueuedSession(i, "AK1", PlacementRequest(IMG, {
        "cpu": rng.choice([0.5, 1.0, 2.0]), "mem": rng.choice([0.5, 1.0]) * GIB}), i)
        for i in range(600)]
    placed = plan(queue, agents, "fifo")
    assert len(placed) > 100
    view = ClusterView.build(agents)
    for q, chosen in placed:  # the oracle: one schedule() per placement, view updated
        assert schedule(view, q.request) == chosen
        view = view.with_placement(chosen, q.request.slots)
