"""Node views for admins (seed 002): the agents with their state and load, and
"choose host", a dry-run placement that says which agent would take a session and why
each other agent would not. Read-only: nothing is reserved or changed.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from common.ids import AgentId
from common.slots import slot_floats
from common.status import LIVE_STATUSES, AgentStatus
from manager.config import ManagerConfig
from manager.db.tables import agents, kernels
from manager.registry import AgentRegistry
from manager.scheduler import AgentSnapshot, PlacementRequest
from manager.scheduler_explain import Verdict, explain
from manager.services import policies
from manager.services.sessions import CreateSpec, agents_holding, find_image, requested_slots

LIVE = [s.value for s in LIVE_STATUSES]


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


async def list_nodes(engine: AsyncEngine, registry: AgentRegistry) -> list[dict[str, Any]]:
    """Every known agent, in id order, with the slots its live sessions hold."""
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(agents).order_by(agents.c.id))).all()
        held = (await conn.execute(sa.select(kernels.c.agent_id, kernels.c.slots).where(
            kernels.c.agent_id.is_not(None), kernels.c.status.in_(LIVE)))).all()
    occupied: dict[str, dict[str, float]] = defaultdict(dict)
    count: dict[str, int] = defaultdict(int)
    for r in held:
        count[r.agent_id] += 1
        acc = occupied[r.agent_id]
        for key, value in slot_floats(r.slots).items():
            acc[key] = acc.get(key, 0.0) + value
    out = []
    for r in rows:
        available = slot_floats(r.available_slots)
        used = occupied.get(r.id, {})
        m = r._mapping
        out.append({
            "id": r.id, "status": r.status, "address": r.addr, "region": r.region,
            "version": r.version, "group": m.get("scaling_group", m.get("group")),
            "connected": registry.is_connected(r.id),
            "available_slots": available, "occupied_slots": used,
            "free_slots": {k: v - used.get(k, 0.0) for k, v in available.items()},
            "reported_occupied_slots": slot_floats(r.occupied_slots or {}),
            "kernels": count.get(r.id, 0),
            "first_contact": _iso(r.first_contact), "last_heartbeat": _iso(r.last_heartbeat),
            "lost_at": _iso(r.lost_at),
        })
    return out


async def choose_host(engine: AsyncEngine, registry: AgentRegistry, config: ManagerConfig,
                      spec: CreateSpec) -> dict[str, Any]:
    """Which agent a create of ``spec`` would go to now, and why (no side effect)."""
    sessions = config.sessions
    async with engine.connect() as conn:
        group = spec.group or policies.DEFAULT_GROUP
        image, labels, _ = await find_image(conn, spec.lang, group)
        wanted = requested_slots(spec, labels, sessions)
        holders = {a.agent_id: a for a in await agents_holding(conn, image)}
        rows = (await conn.execute(sa.select(agents.c.id, agents.c.status,
                                             agents.c.available_slots, agents.c.scaling_group)
                                   .order_by(agents.c.id))).all()
    candidates: list[AgentSnapshot] = []
    others: list[Verdict] = []
    for r in rows:
        agent_id = AgentId(r.id)
        if r.scaling_group != group:
            others.append(Verdict(agent_id, False, False,
                                  (f"in agent group {r.scaling_group!r}, not {group!r}",), {}))
        elif r.status != AgentStatus.ALIVE.value:
            others.append(Verdict(agent_id, False, False, (f"agent is {r.status}",), {}))
        elif not registry.is_connected(agent_id):
            others.append(Verdict(agent_id, False, False,
                                  ("not connected to this manager replica",), {}))
        else:
            candidates.append(holders.get(agent_id) or AgentSnapshot(
                agent_id, slot_floats(r.available_slots), {}, frozenset()))
    chosen, verdicts = explain(candidates, PlacementRequest(image, wanted.as_floats()))
    everyone = sorted(verdicts + others, key=lambda v: v.agent_id)
    return {"image": image, "group": group, "slots": wanted.to_wire(), "chosen": chosen,
            "agents": [v.to_json() for v in everyone]}
