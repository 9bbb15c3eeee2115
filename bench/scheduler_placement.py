"""Scheduler placement throughput: the pure function over 1,000 synthetic agents.

    var/venv/bin/python -m bench.scheduler_placement [--agents 1000] [--placements 20000]

Each decision sees the occupancy left by the previous placement (a new immutable
view per placement), so nothing is reused between decisions but the image mask.
Target (DESIGN.md): ≥ 5,000 placements/s over 1,000 agents.
"""
from __future__ import annotations

import argparse
import random
import time

from common.ids import AgentId
from manager.scheduler import AgentSnapshot, ClusterView, PlacementRequest, schedule


def make_agents(n: int, rng: random.Random) -> list[AgentSnapshot]:
    agents = []
    for i in range(n):
        cpu = float(rng.choice([8, 16, 32, 64]))
        mem = float(rng.choice([32, 64, 128, 256]) * 2**30)
        gpu = float(rng.choice([0, 0, 0, 4, 8]))
        agents.append(AgentSnapshot(
            agent_id=AgentId(f"agent-{i:04d}"),
            capacity={"cpu": cpu, "mem": mem, "cuda.device": gpu},
            occupied={"cpu": 0.0, "mem": 0.0, "cuda.device": 0.0},
            images=frozenset({"kraken/python:latest"}),
        ))
    return agents


def main(n_agents: int, n_placements: int) -> None:
    rng = random.Random(7)
    view = ClusterView.build(make_agents(n_agents, rng))
    requests = [PlacementRequest(image="kraken/python:latest",
                                 slots={"cpu": float(rng.choice([1, 2, 4])),
                                        "mem": float(rng.choice([1, 2, 4]) * 2**30),
                                        "cuda.device": float(rng.choice([0, 0, 0, 1]))})
                for _ in range(n_placements)]
    placed = 0
    t0 = time.perf_counter()
    for req in requests:
        chosen = schedule(view, req)
        if chosen is None:
            continue
        placed += 1
        view = view.with_placement(chosen, req.slots)
    dt = time.perf_counter() - t0
    print(f"scheduler: {n_placements} placement decisions over {n_agents} agents "
          f"in {dt:.3f} s = {n_placements / dt:,.0f} placements/s ({placed} placed)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--placements", type=int, default=20000)
    args = ap.parse_args()
    main(args.agents, args.placements)
