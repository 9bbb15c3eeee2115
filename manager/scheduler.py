"""Placement as a pure function: a snapshot of agents in, one agent id (or None) out.

Best fit: among agents that hold the image and have room, pick the one left with
the least free capacity after placement (normalized per slot), which packs
sessions tightly and keeps large agents free for large requests. Ties go to the
lexicographically smallest agent id so the result is deterministic.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from common.ids import AgentId

_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class AgentSnapshot:
    """What the scheduler knows of one ALIVE agent."""

    agent_id: AgentId
    capacity: Mapping[str, float]  # total slots the agent offers
    occupied: Mapping[str, float]  # slots held by live sessions on it
    images: frozenset[str]


@dataclass(frozen=True, slots=True)
class PlacementRequest:
    image: str
    slots: Mapping[str, float]


def _leftover(agent: AgentSnapshot, request: PlacementRequest) -> float | None:
    """Normalized free capacity after placing ``request``; None when it does not fit."""
    score = 0.0
    cap_map, occ_map = agent.capacity, agent.occupied
    for key, want in request.slots.items():
        if want <= 0:
            continue
        cap = cap_map.get(key, 0.0)
        free = cap - occ_map.get(key, 0.0) - want
        if free < -_EPS:
            return None
        score += free / cap
    return score


def schedule(snapshot: Iterable[AgentSnapshot], request: PlacementRequest) -> AgentId | None:
    """The best-fit agent for ``request``, or None when nothing fits."""
    best: AgentId | None = None
    best_score = 0.0
    for agent in snapshot:
        if request.image not in agent.images:
            continue
        score = _leftover(agent, request)
        if score is None:
            continue
        if best is None or score < best_score - _EPS or (
                abs(score - best_score) <= _EPS and agent.agent_id < best):
            best, best_score = agent.agent_id, score
    return best


def could_ever_fit(capacities: Iterable[Mapping[str, float]],
                   slots: Mapping[str, float]) -> bool:
    """True when at least one agent's total capacity can hold ``slots`` (else 406)."""
    return any(
        all(want <= cap.get(key, 0.0) + _EPS for key, want in slots.items() if want > 0)
        for cap in capacities
    )
