"""The choose-host explanation agrees with the placement it explains."""
from __future__ import annotations

import random

from common.ids import AgentId
from manager.scheduler import AgentSnapshot, PlacementRequest, schedule
from manager.scheduler_explain import explain

IMG = "kraken/python:latest"
GIB = float(2**30)


def _agent(name: str, cpu: float, mem: float, used_cpu: float = 0, used_mem: float = 0,
           images: frozenset[str] = frozenset({IMG})) -> AgentSnapshot:
    return AgentSnapshot(AgentId(name), {"cpu": cpu, "mem": mem},
                         {"cpu": used_cpu, "mem": used_mem}, images)


def test_reasons_name_the_missing_image_and_the_short_slot() -> None:
    agents = [_agent("a-small", 2, 1 * GIB, used_mem=0.75 * GIB),
              _agent("b-noimage", 8, 8 * GIB, images=frozenset()),
              _agent("c-big", 8, 8 * GIB), _agent("d-tight", 2, 2 * GIB)]
    chosen, verdicts = explain(agents, PlacementRequest(IMG, {"cpu": 1, "mem": GIB}))
    by = {v.agent_id: v for v in verdicts}
    assert chosen == "d-tight" and by["d-tight"].chosen
    assert by["a-small"].reasons == ("not enough mem: wants 1024 MiB, 256 MiB of "
                                     "1024 MiB free",)
    assert by["b-noimage"].reasons == (f"image {IMG} is not installed",)
    assert not by["c-big"].chosen and by["c-big"].fits
    assert by["c-big"].reasons == ("fits, but d-tight is the better fit",)
    assert by["d-tight"].free_after == {"cpu": 1.0, "mem": GIB}


def test_a_slot_nobody_offers_is_named() -> None:
    chosen, (v,) = explain([_agent("a", 4, 4 * GIB)],
                           PlacementRequest(IMG, {"cpu": 1, "cuda.device": 1}))
    assert chosen is None and v.reasons == ("offers no cuda.device",)


def test_agrees_with_schedule_on_random_clusters() -> None:
    rng = random.Random(10)
    for _ in range(300):
        agents = [_agent(f"ag-{i}", rng.choice([1, 2, 4]), rng.choice([1, 2, 4]) * GIB,
                         used_cpu=rng.choice([0, 0.5, 1, 2]),
                         used_mem=rng.choice([0, 0.5, 1, 3]) * GIB,
                         images=frozenset({IMG}) if rng.random() < 0.8 else frozenset())
                  for i in range(rng.randint(0, 6))]
        request = PlacementRequest(IMG, {"cpu": rng.choice([0.25, 1, 2]),
                                         "mem": rng.choice([0.25, 1, 2]) * GIB})
        chosen, verdicts = explain(agents, request)
        assert chosen == schedule(agents, request)
        fitting = {v.agent_id for v in verdicts if v.fits}
        assert (chosen is None) == (not fitting)
        assert chosen is None or chosen in fitting
        assert [v.agent_id for v in verdicts if v.chosen] == ([chosen] if chosen else [])
