"""Keypair resource policies, agent groups and presets at admission (issue 10).

A keypair's policy is the ``keypair_resource_policies`` row its
``keypair_policies.resource_policy`` names (NULL or no row: ``default``). Admission
runs inside the create's transaction, after the keypair row is locked
(``SessionCreator._admit``), so two concurrent creates of one keypair are checked one
after the other and cannot both take the last session or slot. Every limit of 0 (or an
empty slot map) means "no limit".
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from common.errors import Forbidden, InvalidAPIParameters, QuotaExceeded
from common.slots import CPU, GPU, MEM, ResourceSlot
from common.status import LIVE_STATUSES, SessionStatus
from manager.db.tables import (
    agent_groups,
    kernels,
    keypair_policies,
    keypair_resource_policies,
    resource_presets,
)

NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")  # group, preset and policy names
DEFAULT_POLICY = "default"
DEFAULT_GROUP = "default"
DEFAULT_SCHEDULER = "fifo"
LIFETIME_EXCEEDED = "lifetime-exceeded"
# sessions that hold a keypair's quota: live, less those being destroyed (as _admit counts)
HOLDING = [s.value for s in LIVE_STATUSES if s is not SessionStatus.TERMINATING]



class _Sized(Protocol):
    @property
    def cpu(self) -> float | None: ...
    @property
    def mem(self) -> int | None: ...
    @property
    def gpu(self) -> float: ...


Spec = TypeVar("Spec", bound=_Sized)


@dataclass(frozen=True, slots=True)
class ResourcePolicy:
    name: str
    max_concurrent_sessions: int = 0
    total_resource_slots: Mapping[str, str] = dataclasses.field(default_factory=dict)
    max_session_lifetime: int = 0  # seconds
    idle_timeout: int = 0  # seconds
    allowed_groups: tuple[str, ...] = (DEFAULT_GROUP,)

    @classmethod
    def from_row(cls, row: Any) -> ResourcePolicy:
        return cls(row.name, row.max_concurrent_sessions, dict(row.total_resource_slots or {}),
                   row.max_session_lifetime, row.idle_timeout,
                   tuple(row.allowed_groups or ()))


def policy_name_of(access_key: Any) -> sa.ColumnElement[str]:
    """SQL: the policy name of the keypair ``access_key`` (a column or a value)."""
    named = sa.select(keypair_policies.c.resource_policy).where(
        keypair_policies.c.access_key == access_key).scalar_subquery()
    return sa.func.coalesce(named, DEFAULT_POLICY)


async def policy_for(conn: AsyncConnection, access_key: str) -> ResourcePolicy:
    row = (await conn.execute(sa.select(keypair_resource_policies).where(
        keypair_resource_policies.c.name == policy_name_of(access_key)))).first()
    # the default policy cannot be deleted; without the table's row nothing is limited
    return ResourcePolicy.from_row(row) if row is not None else ResourcePolicy(DEFAULT_POLICY)


async def choose_group(conn: AsyncConnection, policy: ResourcePolicy,
                       requested: str | None) -> str:
    """The agent group a create runs in: the one it names, which the policy must allow,
    or else the first active group of the policy's ``allowed_groups``."""
    allowed = ", ".join(policy.allowed_groups) or "none"
    if requested is not None and requested not in policy.allowed_groups:
        raise Forbidden(f"resource policy {policy.name!r} does not allow agent group "
                        f"{requested!r} (allowed: {allowed})")
    wanted = [requested] if requested is not None else list(policy.allowed_groups)
    active = set((await conn.execute(sa.select(agent_groups.c.name).where(
        agent_groups.c.name.in_(wanted), agent_groups.c.is_active))).scalars())
    if requested is not None:
        if requested not in active:
            raise InvalidAPIParameters(f"agent group {requested!r} does not exist or is "
                                       "not active")
        return requested
    for name in policy.allowed_groups:
        if name in active:
            return name
    raise Forbidden(f"resource policy {policy.name!r} allows no active agent group "
                    f"(allowed: {allowed})")


def check_sessions(policy: ResourcePolicy, holding: int) -> None:
    """Refuse one more session beyond ``max_concurrent_sessions`` (412)."""
    limit = policy.max_concurrent_sessions
    if limit and holding >= limit:
        raise QuotaExceeded(f"resource policy {policy.name!r} allows at most {limit} "
                            f"concurrent sessions ({holding} live)")


async def check_slots(conn: AsyncConnection, access_key: str, policy: ResourcePolicy,
                      wanted: Mapping[str, str]) -> None:
    """Refuse a session whose slots would take the keypair's live sessions past the
    policy's ``total_resource_slots`` (412); exact decimal arithmetic."""
    if not policy.total_resource_slots:
        return
    rows = (await conn.execute(sa.select(kernels.c.slots).where(
        kernels.c.access_key == access_key, kernels.c.status.in_(HOLDING)))).scalars()
    held = ResourceSlot()
    for slots in rows:
        held = held + _clean(slots)
    after = held + _clean(wanted)
    for key, limit in sorted(policy.total_resource_slots.items()):
        if after.get_amount(key) > Decimal(limit):
            raise QuotaExceeded(
                f"resource policy {policy.name!r} allows at most {key}={limit} in total "
                f"across live sessions; {held.get_amount(key)} held, "
                f"{_clean(wanted).get_amount(key)} asked")


def _clean(slots: Mapping[str, Any] | None) -> ResourceSlot:
    out: dict[str, Decimal] = {}
    for key, value in (slots or {}).items():
        try:
            out[key] = Decimal(str(value))
        except ArithmeticError:
            continue
    return ResourceSlot(out)


async def with_preset(conn: AsyncConnection, spec: Spec, preset: str | None) -> Spec:
    """``spec`` with the preset's cpu / mem / gpu for each of them the create left
    unset (explicit ``instanceCores`` / ``instanceMemory`` / ``instanceGPUs`` win)."""
    if preset is None:
        return spec
    slots = (await conn.execute(sa.select(resource_presets.c.resource_slots).where(
        resource_presets.c.name == preset))).scalar_one_or_none()
    if slots is None:
        raise InvalidAPIParameters(f"no resource preset named {preset!r}")
    given: dict[str, Any] = {}
    if spec.cpu is None and CPU in slots:
        given["cpu"] = float(slots[CPU])
    if spec.mem is None and MEM in slots:
        given["mem"] = int(Decimal(slots[MEM]))
    if not spec.gpu and GPU in slots:
        given["gpu"] = float(slots[GPU])
    return dataclasses.replace(spec, **given)  # type: ignore[type-var]


async def idle_timeout_for(conn: AsyncConnection, access_key: str,
                           default: float) -> float | None:
    """The idle timeout the agent enforces: the policy's when set, else the config's
    (None: never reaped)."""
    policy = await policy_for(conn, access_key)
    return float(policy.idle_timeout) if policy.idle_timeout else (default or None)


async def policy_of(conn: AsyncConnection, group: str) -> str:
    """The scheduler policy (``fifo`` | ``drf``) of agent group ``group`` (``fifo`` for a
    group that does not exist)."""
    found = (await conn.execute(sa.select(agent_groups.c.scheduler).where(
        agent_groups.c.name == group))).scalar_one_or_none()
    return str(found) if found is not None else DEFAULT_SCHEDULER


def lifetime_overdue(limit: int) -> sa.Select[Any]:
    """RUNNING sessions older than their keypair policy's ``max_session_lifetime``
    (oldest first, at most ``limit``, locked, skipping rows another transaction holds)."""
    lifetime = keypair_resource_policies.c.max_session_lifetime
    return (sa.select(kernels.c.id, kernels.c.agent_id, kernels.c.created_at)
            .select_from(kernels)
            .join(keypair_resource_policies,
                  keypair_resource_policies.c.name == policy_name_of(kernels.c.access_key))
            .where(kernels.c.status == SessionStatus.RUNNING.value, lifetime > 0,
                   kernels.c.created_at < sa.func.now() - sa.func.make_interval(
                       0, 0, 0, 0, 0, 0, lifetime))
            .order_by(kernels.c.created_at).limit(limit)
            .with_for_update(of=kernels, skip_locked=True))
