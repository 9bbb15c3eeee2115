"""Why placement chose what it chose: a dry run of ``manager.scheduler.schedule`` that
also says, for every agent, why it was or was not taken (seed 002's "choose host").

The decision itself is always ``schedule``'s (called here, never re-implemented); this
module only explains it: an agent is refused for lacking the image or room in a slot,
and among the agents that fit, best fit picks the one left with the least free
capacity (normalized per slot), ties to the smallest id.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from common.ids import AgentId
from common.slots import MEM
from manager.scheduler import AgentSnapshot, PlacementRequest, schedule

EPS = 1e-9  # the tolerance schedule() allows when comparing free and wanted slots
MIB = 2**20


@dataclass(frozen=True, slots=True)
class Verdict:
    agent_id: AgentId
    fits: bool
    chosen: bool
    reasons: tuple[str, ...]
    free_after: Mapping[str, float]  # per requested slot, when it fits

    def to_json(self) -> dict[str, object]:
        return {"agent_id": self.agent_id, "fits": self.fits, "chosen": self.chosen,
                "reasons": list(self.reasons), "free_after": dict(self.free_after)}


def _amount(slot: str, value: float) -> str:
    return f"{value / MIB:.0f} MiB" if slot == MEM else f"{value:g}"


def refusals(agent: AgentSnapshot, request: PlacementRequest) -> list[str]:
    """Why ``agent`` cannot take ``request`` now (empty: it can)."""
    out = []
    if request.image not in agent.images:
        out.append(f"image {request.image} is not installed")
    for slot, want in sorted(request.slots.items()):
        if want <= 0:
            continue
        cap = agent.capacity.get(slot, 0.0)
        free = cap - agent.occupied.get(slot, 0.0)
        if cap <= 0:
            out.append(f"offers no {slot}")
        elif want > free + EPS:
            out.append(f"not enough {slot}: wants {_amount(slot, want)}, "
                       f"{_amount(slot, max(free, 0.0))} of {_amount(slot, cap)} free")
    return out


def explain(agents: Iterable[AgentSnapshot], request: PlacementRequest
            ) -> tuple[AgentId | None, list[Verdict]]:
    """``schedule``'s choice and a verdict per agent, in agent id order."""
    ordered = sorted(agents, key=lambda a: a.agent_id)
    chosen = schedule(ordered, request)
    verdicts = []
    for agent in ordered:
        reasons = refusals(agent, request)
        fits = not reasons
        free_after = {s: agent.capacity.get(s, 0.0) - agent.occupied.get(s, 0.0) - w
                      for s, w in sorted(request.slots.items()) if w > 0} if fits else {}
        if agent.agent_id == chosen:
            reasons.append("chosen: the best fit (least free capacity left after placement)")
        elif fits:
            reasons.append(f"fits, but {chosen} is the better fit")
        verdicts.append(Verdict(agent.agent_id, fits, agent.agent_id == chosen,
                                tuple(reasons), free_after))
    return chosen, verdicts
