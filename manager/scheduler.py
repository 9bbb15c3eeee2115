"""Placement as a pure function: a snapshot of agents in, one agent id (or None) out.

Best fit: among agents that hold the image and have room, pick the one left with
the least free capacity after placement (normalized per slot), which packs
sessions tightly and keeps large agents free for large requests. Ties go to the
lexicographically smallest agent id so the result is deterministic.

``ClusterView`` holds the snapshot as matrices (agents × slots) so one decision
over thousands of agents is a few vector operations; ``with_placement`` returns
the view after a placement without touching the original.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from common.ids import AgentId

_EPS = 1e-9


def stricter(held: Mapping[str, float], reported: Mapping[str, float]) -> dict[str, float]:
    """An agent's occupancy per slot: the larger of what its live sessions hold (the
    database) and what it last reported, so a leak never invites an over-placement."""
    return {k: max(held.get(k, 0.0), reported.get(k, 0.0)) for k in set(held) | set(reported)}


@dataclass(frozen=True, slots=True)
class AgentSnapshot:
    """What the scheduler knows of one ALIVE agent."""

    agent_id: AgentId
    capacity: Mapping[str, float]  # total slots the agent offers
    occupied: Mapping[str, float]  # slots held by live sessions on it
    images: frozenset[str]
    group: str = "default"  # the agent group it joined with


@dataclass(frozen=True, slots=True)
class PlacementRequest:
    image: str
    slots: Mapping[str, float]
    group: str = "default"  # only agents of this group may take it


@dataclass(frozen=True)
class ClusterView:
    """A snapshot of agents as arrays, ordered by agent id (the tie-break order)."""

    agent_ids: tuple[AgentId, ...]
    slot_names: tuple[str, ...]
    capacity: np.ndarray  # float64 (agents, slots)
    occupied: np.ndarray  # float64 (agents, slots)
    images: tuple[frozenset[str], ...]
    _masks: dict[str, np.ndarray] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def build(cls, agents: Iterable[AgentSnapshot]) -> ClusterView:
        ordered = sorted(agents, key=lambda a: a.agent_id)
        names = sorted({k for a in ordered for k in (*a.capacity, *a.occupied)})
        cap = np.array([[a.capacity.get(k, 0.0) for k in names] for a in ordered],
                       dtype=np.float64).reshape(len(ordered), len(names))
        occ = np.array([[a.occupied.get(k, 0.0) for k in names] for a in ordered],
                       dtype=np.float64).reshape(len(ordered), len(names))
        return cls(tuple(a.agent_id for a in ordered), tuple(names), cap, occ,
                   tuple(a.images for a in ordered))

    def image_mask(self, image: str) -> np.ndarray:
        mask = self._masks.get(image)
        if mask is None:
            mask = np.fromiter((image in imgs for imgs in self.images), dtype=bool,
                               count=len(self.images))
            self._masks[image] = mask
        return mask

    def request_vector(self, slots: Mapping[str, float]) -> np.ndarray | None:
        """The request over this view's slot names; None if it wants a slot nobody has."""
        if any(v > 0 and k not in self.slot_names for k, v in slots.items()):
            return None
        return np.array([max(0.0, slots.get(k, 0.0)) for k in self.slot_names])

    def with_placement(self, agent_id: AgentId, slots: Mapping[str, float]) -> ClusterView:
        idx = self.agent_ids.index(agent_id)
        occ = self.occupied.copy()
        occ[idx] += [slots.get(k, 0.0) for k in self.slot_names]
        return ClusterView(self.agent_ids, self.slot_names, self.capacity, occ, self.images,
                           self._masks)


def schedule(snapshot: ClusterView | Iterable[AgentSnapshot],
             request: PlacementRequest) -> AgentId | None:
    """The best-fit agent for ``request``, or None when nothing fits."""
    view = snapshot if isinstance(snapshot, ClusterView) else ClusterView.build(snapshot)
    if not view.agent_ids:
        return None
    want = view.request_vector(request.slots)
    if want is None:
        return None
    index = best_index(view.capacity, view.occupied, view.image_mask(request.image), want)
    return None if index is None else view.agent_ids[index]


def best_index(capacity: np.ndarray, occupied: np.ndarray, eligible: np.ndarray,
               want: np.ndarray) -> int | None:
    """The best-fit row among ``eligible`` agents (the rule of ``schedule``), or None."""
    return pick(fit_scores(capacity, occupied, eligible, want))


def fit_scores(capacity: np.ndarray, occupied: np.ndarray, eligible: np.ndarray,
               want: np.ndarray) -> np.ndarray:
    """Per agent row: the free capacity left after placing ``want``, normalized per asked
    slot and summed (smaller = tighter fit); inf where it does not fit or is not eligible.
    Works on a block of rows too (``capacity``/``occupied`` sliced alike)."""
    free_after = capacity - occupied - want
    fits = eligible & np.all(free_after >= -_EPS, axis=-1)
    asked = want > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(capacity[..., asked] > 0,
                         free_after[..., asked] / capacity[..., asked], 0.0)
    return np.where(fits, ratio.sum(axis=-1), np.inf)


def pick(score: np.ndarray) -> int | None:
    """The row with the lowest finite score; ties within _EPS go to the first row (the
    view is sorted by agent id, so the smallest id)."""
    if not score.size:
        return None
    best = float(score.min())
    if best == np.inf:
        return None
    return int(np.flatnonzero(score <= best + _EPS)[0])


def could_ever_fit(capacities: Iterable[Mapping[str, float]],
                   slots: Mapping[str, float]) -> bool:
    """True when at least one agent's total capacity can hold ``slots`` (else 406)."""
    return any(
        all(want <= cap.get(key, 0.0) + _EPS for key, want in slots.items() if want > 0)
        for cap in capacities
    )
