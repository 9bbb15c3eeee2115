"""Placing the queue as a pure function: queued sessions and agents in, placements out.

``plan(queue, agents, policy)`` decides, for each agent group on its own, which
queued sessions go to which agent now; the caller applies the result under the
placement lock (manager/services/queue.py). Within a group:

- **Order.** A higher ``priority`` always goes first (an admin's "move to front").
  Within one priority, ``fifo`` takes sessions in arrival order (``seq``); ``drf``
  (dominant-resource fairness) takes next the head of the keypair whose dominant
  share — the largest fraction of any slot of the group's total capacity that its
  live and just-placed sessions hold — is smallest (ties: earliest arrival), and
  FIFO among one keypair's own sessions.
- **Head of line.** The next session in that order that does not fit now stops its
  group's pass: nobody overtakes it, so a large request is never starved by a
  stream of small ones. The one exception (the backfill rule): a session that could
  not fit on any agent of its group even if that agent were empty (image missing, a
  slot nobody has, too large) does not block; it is skipped and waits for an agent
  that can take it.
- **Where.** Best fit (the rule of ``manager.scheduler.schedule``), over occupancy
  updated by every placement of the same pass, so one pass never overfills an agent. The
  scores of each request shape are computed once per pass and then only the row that
  changed is rescored, so a placement costs one scan for the minimum.
"""
from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from common.ids import AgentId
from manager.scheduler import AgentSnapshot, ClusterView, PlacementRequest, fit_scores, pick

Policy = Literal["fifo", "drf"]
POLICIES: tuple[Policy, ...] = ("fifo", "drf")
_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class QueuedSession:
    """One PENDING session waiting for room."""

    key: Hashable  # the session's id for the caller
    access_key: str
    request: PlacementRequest
    seq: int  # arrival order: smaller came first
    priority: int = 0  # larger goes first


def plan(queue: Sequence[QueuedSession], agents: Iterable[AgentSnapshot] | ClusterView,
         policy: Policy | Callable[[str], Policy],
         held: Mapping[tuple[str, str], Mapping[str, float]] | None = None,
         ) -> list[tuple[QueuedSession, AgentId]]:
    """Placements for now, in the order they were decided.

    ``agents``: the ALIVE agents that may be given sessions (a ``ClusterView`` stands
    for the ``default`` group alone). ``policy``: one policy, or the policy of a
    group. ``held``: slots the keypairs' live sessions hold, by (group, access key),
    for DRF shares (absent: nothing held).
    """
    policy_of = policy if callable(policy) else (lambda _g: policy)
    by_group: dict[str, list[QueuedSession]] = defaultdict(list)
    for q in queue:
        by_group[q.request.group].append(q)
    if isinstance(agents, ClusterView):
        views = {"default": agents}
    else:
        members: dict[str, list[AgentSnapshot]] = defaultdict(list)
        for a in agents:
            members[a.group].append(a)
        views = {g: ClusterView.build(members[g]) for g in by_group if g in members}
    out: list[tuple[QueuedSession, AgentId]] = []
    for group in sorted(by_group):
        view = views.get(group)
        if view is None or not view.agent_ids:
            continue
        chosen = policy_of(group)
        if chosen not in POLICIES:
            raise ValueError(f"unknown placement policy {chosen!r} for group {group!r}")
        out += _GroupPass(view, group, held or {}).run(by_group[group], chosen)
    return out


class _GroupPass:
    """One group's pass over mutable occupancy."""

    def __init__(self, view: ClusterView, group: str,
                 held: Mapping[tuple[str, str], Mapping[str, float]]) -> None:
        self.view = view
        self.group = group
        self.occupied = view.occupied.copy()
        self.total = view.capacity.sum(axis=0)
        self.held = held
        # per request shape (image, slot vector): the best-fit score of every agent,
        # kept current row by row as the pass places sessions
        self.scores: dict[tuple[str, bytes], np.ndarray] = {}
        self.shapes: dict[tuple[str, bytes], tuple[np.ndarray, np.ndarray]] = {}

    def run(self, queue: list[QueuedSession], policy: Policy
            ) -> list[tuple[QueuedSession, AgentId]]:
        tiers: dict[int, list[QueuedSession]] = defaultdict(list)
        for q in queue:
            tiers[q.priority].append(q)
        out: list[tuple[QueuedSession, AgentId]] = []
        for priority in sorted(tiers, reverse=True):
            tier = sorted(tiers[priority], key=lambda q: q.seq)
            blocked = (self._fifo(tier, out) if policy == "fifo"
                       else self._drf(tier, out))
            if blocked:
                break  # a higher priority waits: lower ones wait behind it
        return out

    def _try(self, q: QueuedSession) -> int | None | Literal[False]:
        """The agent row it takes now (occupancy updated); None: it would fit an
        empty agent but fits none now (blocks); False: it could never fit (skipped)."""
        want = self.view.request_vector(q.request.slots)
        if want is None:
            return False
        key = (q.request.image, want.tobytes())
        score = self.scores.get(key)
        if score is None:
            mask = self.view.image_mask(q.request.image)
            if not (mask & np.all(self.view.capacity - want >= -_EPS, axis=1)).any():
                self.scores[key] = score = np.empty(0)
            else:
                self.scores[key] = score = fit_scores(self.view.capacity, self.occupied,
                                                      mask, want)
                self.shapes[key] = (mask, want)
        if not score.size:
            return False
        index = pick(score)
        if index is not None:
            self._place(index, want)
        return index

    def _place(self, index: int, want: np.ndarray) -> None:
        """Occupy ``want`` on row ``index`` and rescore that row for every request shape
        seen so far (the other rows' scores do not change)."""
        self.occupied[index] += want
        cap, occ = self.view.capacity[index], self.occupied[index]
        for key, (mask, shape) in self.shapes.items():
            self.scores[key][index] = fit_scores(cap, occ, mask[index], shape)

    def _fifo(self, tier: list[QueuedSession],
              out: list[tuple[QueuedSession, AgentId]]) -> bool:
        for q in tier:
            index = self._try(q)
            if index is None:
                return True
            if index is not False:
                out.append((q, self.view.agent_ids[index]))
        return False

    def _drf(self, tier: list[QueuedSession],
             out: list[tuple[QueuedSession, AgentId]]) -> bool:
        own: dict[str, list[QueuedSession]] = defaultdict(list)
        for q in tier:  # already in arrival order
            own[q.access_key].append(q)
        names = self.view.slot_names
        usage = {k: np.array([self.held.get((self.group, k), {}).get(n, 0.0) for n in names])
                 for k in own}
        heads = {k: 0 for k in own}
        heap = [(self._share(usage[k]), own[k][0].seq, k) for k in own]
        heapq.heapify(heap)
        while heap:
            _, _, key = heapq.heappop(heap)
            q = own[key][heads[key]]
            index = self._try(q)
            if index is None:
                return True
            heads[key] += 1
            if index is not False:
                out.append((q, self.view.agent_ids[index]))
                want = self.view.request_vector(q.request.slots)
                assert want is not None  # it fitted
                usage[key] = usage[key] + want
            if heads[key] < len(own[key]):
                heapq.heappush(heap, (self._share(usage[key]), own[key][heads[key]].seq, key))
        return False

    def _share(self, used: np.ndarray) -> float:
        with np.errstate(divide="ignore", invalid="ignore"):
            shares = np.where(self.total > 0, used / self.total, 0.0)
        return float(shares.max()) if shares.size else 0.0
