"""The pure scheduler: best fit over free capacity, None when nothing fits."""
from __future__ import annotations

import random

from common.ids import AgentId
from manager.scheduler import AgentSnapshot, PlacementRequest, could_ever_fit, schedule

IMG = "kraken/python:latest"
GIB = float(2**30)


def agent(name: str, cpu: float, mem: float, used_cpu: float = 0, used_mem: float = 0,
          images: frozenset[str] = frozenset({IMG})) -> AgentSnapshot:
    return AgentSnapshot(AgentId(name), {"cpu": cpu, "mem": mem},
                         {"cpu": used_cpu, "mem": used_mem}, images)


def test_best_fit_picks_the_tightest_agent() -> None:
    agents = [agent("big", 64, 256 * GIB), agent("small", 2, 4 * GIB),
              agent("mid", 8, 16 * GIB)]
    assert schedule(agents, PlacementRequest(IMG, {"cpu": 1, "mem": GIB})) == "small"
    assert schedule(agents, PlacementRequest(IMG, {"cpu": 4, "mem": GIB})) == "mid"


def test_occupied_capacity_counts() -> None:
    agents = [agent("a", 4, 8 * GIB, used_cpu=4), agent("b", 8, 8 * GIB)]
    assert schedule(agents, PlacementRequest(IMG, {"cpu": 1, "mem": GIB})) == "b"


def test_image_must_be_present() -> None:
    agents = [agent("a", 4, 8 * GIB, images=frozenset({"other:latest"}))]
    assert schedule(agents, PlacementRequest(IMG, {"cpu": 1, "mem": GIB})) is None


def test_nothing_fits_returns_none() -> None:
    agents = [agent(f"a{i}", 2, 2 * GIB, used_cpu=1.5) for i in range(100)]
    assert schedule(agents, PlacementRequest(IMG, {"cpu": 1, "mem": GIB})) is None
    assert schedule([], PlacementRequest(IMG, {"cpu": 1})) is None


def test_gpu_requests_need_gpu_agents() -> None:
    agents = [agent("cpu-only", 64, 64 * GIB),
              AgentSnapshot(AgentId("gpu"), {"cpu": 8, "mem": 32 * GIB, "cuda.device": 1},
                            {}, frozenset({IMG}))]
    assert schedule(agents, PlacementRequest(IMG, {"cpu": 1, "cuda.device": 0.5})) == "gpu"


def test_thousands_of_agents_match_a_brute_force_oracle() -> None:
    rng = random.Random(7)
    agents = [agent(f"agent-{i:05d}", rng.choice([2, 4, 8, 16]), rng.choice([4, 8, 16]) * GIB,
                    used_cpu=rng.random() * 4, used_mem=rng.random() * 4 * GIB)
              for i in range(3000)]
    for _ in range(20):
        req = {"cpu": rng.choice([0.5, 1, 2, 4]), "mem": rng.choice([1, 2, 4]) * GIB}
        chosen = schedule(agents, PlacementRequest(IMG, req))
        fitting = [a for a in agents if all(
            a.capacity[k] - a.occupied[k] >= v for k, v in req.items())]
        assert chosen is not None
        best = min(sum((a.capacity[k] - a.occupied[k] - v) / a.capacity[k]
                       for k, v in req.items()) for a in fitting)
        got = next(a for a in agents if a.agent_id == chosen)
        score = sum((got.capacity[k] - got.occupied[k] - v) / got.capacity[k]
                    for k, v in req.items())
        assert abs(score - best) < 1e-6


def test_could_ever_fit() -> None:
    caps = [{"cpu": 4, "mem": 8 * GIB}, {"cpu": 16, "mem": 4 * GIB}]
    assert could_ever_fit(caps, {"cpu": 4, "mem": 8 * GIB})
    assert not could_ever_fit(caps, {"cpu": 16, "mem": 8 * GIB})
    assert not could_ever_fit([], {"cpu": 1})


def test_cluster_view_placement_is_copy_on_write() -> None:
    from manager.scheduler import ClusterView

    agents = [AgentSnapshot(agent_id=AgentId(f"a{i}"), capacity={"cpu": 4.0},
                            occupied={"cpu": 0.0}, images=frozenset({"img"})) for i in range(2)]
    view = ClusterView.build(agents)
    req = PlacementRequest(image="img", slots={"cpu": 3.0})
    first = schedule(view, req)
    after = view.with_placement(first, req.slots)  # type: ignore[arg-type]
    assert schedule(view, req) == first  # the original view is untouched
    second = schedule(after, req)
    assert second is not None and second != first
    assert schedule(after.with_placement(second, req.slots), req) is None
