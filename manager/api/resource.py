"""``GET /resource/presets`` and ``GET /scaling-groups`` (as Backend.AI names them):
what a create may name in ``config.resourcePreset`` and ``config.scalingGroup``."""
from __future__ import annotations

import sqlalchemy as sa
from aiohttp import web

from manager.api.auth import caller
from manager.api.keys import DB
from manager.api.problems import json_response
from manager.api.version import PREFIXES
from manager.db.tables import agent_groups, resource_presets
from manager.services.policies import policy_for


async def list_presets(request: web.Request) -> web.Response:
    async with request.app[DB].connect() as conn:
        rows = (await conn.execute(sa.select(resource_presets).order_by(
            resource_presets.c.name))).all()
    return json_response({"presets": [
        {"name": r.name, "resource_slots": dict(r.resource_slots)} for r in rows]})


async def list_groups(request: web.Request) -> web.Response:
    """The active agent groups the caller's resource policy allows, in its order (the
    first is where a create naming no group runs)."""
    async with request.app[DB].connect() as conn:
        policy = await policy_for(conn, caller(request).access_key)
        active = set((await conn.execute(sa.select(agent_groups.c.name).where(
            agent_groups.c.name.in_(policy.allowed_groups), agent_groups.c.is_active)
        )).scalars())
    return json_response({"scaling_groups": [
        {"name": g} for g in policy.allowed_groups if g in active]})


def add_routes(app: web.Application) -> None:
    for prefix in PREFIXES:
        app.router.add_get(f"{prefix}/resource/presets", list_presets)
        app.router.add_get(f"{prefix}/scaling-groups", list_groups)
