"""Plain records the GraphQL types resolve from, built from table rows in one place.

Units follow what the official client prints: memory slots in MiB, CPU/GPU slots in
(possibly fractional) cores or devices, counters in bytes / milliseconds.
"""
from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from common.slots import CPU, GPU, MEM, ResourceSlot
from common.stats import STAT_KEYS
from manager.replica import public_info
from manager.services.images import split_reference

MIB = 2**20


def _int(value: Any) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return 0


@dataclass(frozen=True, slots=True)
class SlotSummary:
    """cpu (cores), mem (MiB), gpu (devices) of a slot map."""

    cpu: float = 0.0
    mem: int = 0
    gpu: float = 0.0

    @classmethod
    def of(cls, slots: Mapping[str, Any] | None) -> SlotSummary:
        f = ResourceSlot.from_wire(slots).as_floats()
        return cls(f.get(CPU, 0.0), int(f.get(MEM, 0.0) // MIB), f.get(GPU, 0.0))


@dataclass(frozen=True, slots=True)
class KeypairRecord:
    """A keypair as GraphQL shows it: ``secret_key`` is None except in the answer of
    ``create_keypair`` (secrets are stored sealed and never read back)."""

    access_key: str
    secret_key: str | None = field(repr=False)
    user_id: str
    is_active: bool
    is_admin: bool
    concurrency_limit: int
    num_queries: int
    created_at: datetime
    last_used: datetime | None
    rate_limit: int | None
    resource_policy: str | None
    strict_signing: bool = False

    @classmethod
    def from_row(cls, r: Any) -> KeypairRecord:
        return cls(r.access_key, None, r.user_id, r.is_active, r.is_admin,
                   r.concurrency_limit, r.num_queries, r.created_at, r.last_used,
                   r.rate_limit, r.resource_policy, bool(r.strict_signing))


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """One container of a compute session (sessions have one, the master, today)."""

    id: uuid.UUID
    sess_id: str
    access_key: str
    role: str
    status: str
    status_info: str | None
    created_at: datetime
    terminated_at: datetime | None
    agent: str | None
    container_id: str | None
    lang: str
    image: str
    tag: str | None
    num_queries: int
    slots: SlotSummary
    stats: Mapping[str, int]
    scaling_group: str | None = None  # the agent group it was created for (issue 10)

    @classmethod
    def from_row(cls, r: Any) -> SessionRecord:
        raw = dict(r.last_stat or {})
        stats = {k: _int(raw.get(k, 0)) for k in STAT_KEYS}
        return cls(r.id, r.session_name, r.access_key, "master", r.status,
                   public_info(r.status_info),
                   r.created_at, r.terminated_at, r.agent_id, r.container_id, r.lang,
                   r.image, r.tag, r.num_queries, SlotSummary.of(r.slots), stats,
                   r.scaling_group)


@dataclass(frozen=True, slots=True)
class AgentRecord:
    id: str
    status: str
    region: str
    addr: str
    version: str
    first_contact: datetime
    last_heartbeat: datetime
    lost_at: datetime | None
    capacity: SlotSummary
    scaling_group: str = "default"  # the agent group it joined (issue 10)

    @classmethod
    def from_row(cls, r: Any) -> AgentRecord:
        return cls(r.id, r.status, r.region, r.addr, r.version, r.first_contact,
                   r.last_heartbeat, r.lost_at, SlotSummary.of(r.available_slots),
                   r.scaling_group)


@dataclass(frozen=True, slots=True)
class AgentUsage:
    """What live sessions hold on an agent, summed from the ``kernels`` table."""

    slots: SlotSummary = SlotSummary()
    mem_cur_bytes: int = 0
    sessions: int = 0


@dataclass(frozen=True, slots=True)
class ImageRecord:
    reference: str
    name: str
    tag: str
    hash: str
    labels: Mapping[str, str]
    installed_agents: tuple[str, ...]

    @classmethod
    def build(cls, reference: str, image_id: str, labels: Mapping[str, Any],
              agents: tuple[str, ...]) -> ImageRecord:
        repo, tag = split_reference(reference)
        return cls(reference, repo, tag or "latest", image_id,
                   {str(k): str(v) for k, v in labels.items()}, agents)


@dataclass(frozen=True, slots=True)
class VFolderRecord:
    id: uuid.UUID
    host: str
    name: str
    owner: str
    max_files: int
    max_size: int
    created_at: datetime
    last_used: datetime | None
    num_files: int
    cur_size: int

    @classmethod
    def from_row(cls, r: Any) -> VFolderRecord:
        return cls(r.id, r.host, r.name, r.owner, r.max_files, r.max_size, r.created_at,
                   r.last_used, r.num_files, r.cur_size)
