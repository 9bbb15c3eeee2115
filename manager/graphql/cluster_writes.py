"""The SQL behind the agent group, resource preset and keypair resource policy admin
API (GraphQL, admin only): validated values, one transaction per write. A refusal a
caller can act on (a name in use, a row still referenced) is returned as a message;
bad values raise ``InvalidAPIParameters``."""
from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from common.errors import InvalidAPIParameters
from common.slots import MEM, parse_bytes
from manager.db.tables import (
    SCHEDULER_POLICIES,
    agent_groups,
    agents,
    keypair_policies,
    keypair_resource_policies,
    resource_presets,
)
from manager.services.policies import DEFAULT_GROUP, DEFAULT_POLICY, NAME

SLOT_NAME = re.compile(r"^[a-z][a-z0-9._-]{0,31}$")
MAX_SLOTS = 16
MAX_LIMIT = 10**9
TABLES = {"group": agent_groups, "preset": resource_presets,
          "policy": keypair_resource_policies}


def check_name(name: str, what: str) -> str:
    if not NAME.fullmatch(name):
        raise InvalidAPIParameters(f"the {what} name must be 1-64 of A-Z a-z 0-9 . _ -")
    return name


def slot_map(value: Any, what: str, *, allow_empty: bool) -> dict[str, str]:
    """A slot map as stored: slot → positive decimal string (``mem`` may be ``1g``)."""
    if not isinstance(value, Mapping) or len(value) > MAX_SLOTS:
        raise InvalidAPIParameters(f"{what} must be an object of at most {MAX_SLOTS} slots")
    out: dict[str, str] = {}
    for key, amount in value.items():
        if not isinstance(key, str) or not SLOT_NAME.fullmatch(key):
            raise InvalidAPIParameters(f"{what}: {key!r} is not a slot name")
        try:
            if key == MEM and isinstance(amount, str):
                number = Decimal(parse_bytes(amount))
            elif isinstance(amount, bool) or not isinstance(amount, (int, float, str)):
                raise InvalidOperation
            else:
                number = Decimal(str(amount))
        except (InvalidOperation, ValueError, ArithmeticError):
            raise InvalidAPIParameters(f"{what}: {key} must be a number") from None
        if not number.is_finite() or number <= 0 or number > MAX_LIMIT * 2**20:
            raise InvalidAPIParameters(f"{what}: {key} must be a positive number")
        out[key] = str(number.normalize()) if key != MEM else str(int(number))
    if not out and not allow_empty:
        raise InvalidAPIParameters(f"{what} must name at least one slot")
    return out


def _limit(props: Mapping[str, Any], key: str) -> int | None:
    value = props.get(key)
    if value is not None and not 0 <= value <= MAX_LIMIT:
        raise InvalidAPIParameters(f"{key} must be between 0 and {MAX_LIMIT} (0: no limit)")
    return value  # type: ignore[no-any-return]


def group_values(props: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if (description := props.get("description")) is not None:
        if len(description) > 512:
            raise InvalidAPIParameters("description is longer than 512 characters")
        out["description"] = description
    if (active := props.get("is_active")) is not None:
        out["is_active"] = active
    if (scheduler := props.get("scheduler")) is not None:
        if scheduler not in SCHEDULER_POLICIES:
            raise InvalidAPIParameters(f"scheduler must be one of {list(SCHEDULER_POLICIES)}")
        out["scheduler"] = scheduler
    return out


def preset_values(props: Mapping[str, Any]) -> dict[str, Any]:
    slots = props.get("resource_slots")
    return {} if slots is None else {
        "resource_slots": slot_map(slots, "resource_slots", allow_empty=False)}


def policy_values(props: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("max_concurrent_sessions", "max_session_lifetime", "idle_timeout"):
        if (value := _limit(props, key)) is not None:
            out[key] = value
    if (slots := props.get("total_resource_slots")) is not None:
        out["total_resource_slots"] = slot_map(slots, "total_resource_slots",
                                               allow_empty=True)
    if (groups := props.get("allowed_groups")) is not None:
        if len(groups) > 64:
            raise InvalidAPIParameters("allowed_groups lists at most 64 groups")
        out["allowed_groups"] = list(dict.fromkeys(check_name(g, "group") for g in groups))
    return out


async def _missing_groups(conn: Any, names: list[str]) -> list[str]:
    found = set((await conn.execute(sa.select(agent_groups.c.name).where(
        agent_groups.c.name.in_(names)))).scalars())
    return [n for n in names if n not in found]


async def create(engine: AsyncEngine, kind: str, name: str, values: dict[str, Any]
                 ) -> str | None:
    """Insert a row; returns why not (the name is taken, a group does not exist)."""
    table = TABLES[kind]
    async with engine.begin() as conn:
        if missing := await _missing_groups(conn, values.get("allowed_groups", [])):
            return f"no such agent group: {', '.join(missing)}"
        done = await conn.execute(pg_insert(table).values(name=name, **values)
                                  .on_conflict_do_nothing(index_elements=["name"]))
    return None if done.rowcount else f"a {kind} named {name!r} exists"


async def modify(engine: AsyncEngine, kind: str, name: str, values: dict[str, Any]
                 ) -> str | None:
    table = TABLES[kind]
    async with engine.begin() as conn:
        if missing := await _missing_groups(conn, values.get("allowed_groups", [])):
            return f"no such agent group: {', '.join(missing)}"
        found = (await conn.execute(sa.select(table.c.name).where(
            table.c.name == name).with_for_update())).first()
        if found is None:
            return f"no such {kind}"
        if values:
            await conn.execute(sa.update(table).where(table.c.name == name).values(**values))
    return None


async def delete(engine: AsyncEngine, kind: str, name: str) -> str | None:
    """Delete a row unless it is a default or still in use; returns why not."""
    table = TABLES[kind]
    if (kind, name) in (("group", DEFAULT_GROUP), ("policy", DEFAULT_POLICY)):
        return f"the default {kind} cannot be deleted"
    async with engine.begin() as conn:
        found = (await conn.execute(sa.select(table.c.name).where(
            table.c.name == name).with_for_update())).first()
        if found is None:
            return f"no such {kind}"
        if why := await _in_use(conn, kind, name):
            return why
        await conn.execute(sa.delete(table).where(table.c.name == name))
    return None


async def _in_use(conn: Any, kind: str, name: str) -> str | None:
    if kind == "policy":
        users = (await conn.execute(sa.select(sa.func.count()).where(
            keypair_policies.c.resource_policy == name))).scalar_one()
        return f"{users} keypair(s) use this policy" if users else None
    if kind == "group":
        members = (await conn.execute(sa.select(sa.func.count()).where(
            agents.c.scaling_group == name))).scalar_one()
        if members:
            return f"{members} agent(s) belong to this group"
        listing = (await conn.execute(sa.select(keypair_resource_policies.c.name).where(
            keypair_resource_policies.c.allowed_groups.contains([name])))).scalars().all()
        if listing:
            return f"resource policies allow this group: {', '.join(sorted(listing))}"
    return None


async def rows(engine: AsyncEngine, kind: str, name: str | None = None,
               is_active: bool | None = None) -> list[Any]:
    table = TABLES[kind]
    stmt = sa.select(table).order_by(table.c.name)
    if name is not None:
        stmt = stmt.where(table.c.name == name)
    if is_active is not None:
        stmt = stmt.where(table.c.is_active == is_active)
    async with engine.connect() as conn:
        return list((await conn.execute(stmt)).all())


async def policy_exists(conn: Any, name: str) -> bool:
    return (await conn.execute(sa.select(keypair_resource_policies.c.name).where(
        keypair_resource_policies.c.name == name))).first() is not None
