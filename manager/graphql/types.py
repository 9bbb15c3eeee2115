"""GraphQL object types (seed 004 §2.17–§2.19 plus what client 18.12.3 asks for).

Field names are underscore style. Types only shape records; nested objects come from
the per-request loaders in ``info.context.loaders``. Counters that may exceed 32 bits
are ``BigInt``; fractional slot amounts are ``Float``.
"""
from __future__ import annotations

from typing import Any

import graphene
from graphene import BigInt, Boolean, DateTime, Float, Int, List, String

from common.slots import CPU, GPU, LABEL_MAXCORES, LABEL_MAXMEM, LABEL_MINCORES, LABEL_MINMEM, MEM
from manager.graphql.queries import status_values
from manager.graphql.queue import resolve_queue_position
from manager.graphql.records import (
    AgentRecord,
    AgentUsage,
    ImageRecord,
    KeypairRecord,
    SessionRecord,
    VFolderRecord,
)


def _stat(name: str) -> graphene.Field:
    def resolve(rec: SessionRecord, _info: Any) -> int:
        return rec.stats.get(name, 0)
    return graphene.Field(BigInt, resolver=resolve)


class _ContainerFields:
    """Fields shared by ComputeSession and ComputeWorker (§2.18)."""

    sess_id = String()
    id = graphene.UUID()
    role = String()
    status = String()
    status_info = String()
    created_at = DateTime()
    terminated_at = DateTime()
    agent = String()
    container_id = String()
    access_key = String()
    lang = String()
    image = String()
    tag = String()
    mem_slot = Int(resolver=lambda r, _i: r.slots.mem)
    cpu_slot = Float(resolver=lambda r, _i: r.slots.cpu)
    gpu_slot = Float(resolver=lambda r, _i: r.slots.gpu)
    num_queries = BigInt()
    cpu_used = _stat("cpu_used")
    mem_max_bytes = _stat("mem_max_bytes")
    mem_cur_bytes = _stat("mem_cur_bytes")
    net_rx_bytes = _stat("net_rx_bytes")
    net_tx_bytes = _stat("net_tx_bytes")
    io_read_bytes = _stat("io_read_bytes")
    io_write_bytes = _stat("io_write_bytes")
    io_max_scratch_size = _stat("io_max_scratch_size")
    io_cur_scratch_size = _stat("io_cur_scratch_size")
    scaling_group = String(description="the agent group it runs in")


class ComputeWorker(_ContainerFields, graphene.ObjectType):
    """One container of a compute session."""


class ComputeSession(_ContainerFields, graphene.ObjectType):
    """A compute session; ``workers`` lists its containers (today: the master only)."""

    workers = List(ComputeWorker, status=String())
    keypair = graphene.Field(lambda: KeyPair)
    queue_position = Int(description="1 = next to be placed; null unless queued",
                         resolver=resolve_queue_position)

    @staticmethod
    def resolve_workers(rec: SessionRecord, _info: Any, status: str | None = None
                        ) -> list[SessionRecord]:
        wanted = status_values(status)
        return [rec] if wanted is None or rec.status in wanted else []

    @staticmethod
    async def resolve_keypair(rec: SessionRecord, info: Any) -> KeypairRecord | None:
        return await info.context.loaders.keypair.load(rec.access_key)  # type: ignore[no-any-return]


class VirtualFolder(graphene.ObjectType):
    id = graphene.UUID()
    host = String()
    name = String()
    owner = String()
    max_files = Int()
    max_size = BigInt(description="MiB")
    created_at = DateTime()
    last_used = DateTime()
    num_files = Int()
    cur_size = BigInt()


class KeyPair(graphene.ObjectType):
    access_key = String()
    secret_key = String(description="only in the answer of create_keypair; null elsewhere")
    strict_signing = Boolean(description="requests must use strict signing (docs/api.md)")
    user_id = String()
    is_active = Boolean()
    is_admin = Boolean()
    resource_policy = String()
    created_at = DateTime()
    last_used = DateTime()
    concurrency_limit = Int()
    concurrency_used = Int()
    rate_limit = Int()
    num_queries = BigInt()
    vfolders = List(VirtualFolder)
    compute_sessions = List(ComputeSession, status=String())

    @staticmethod
    async def resolve_concurrency_used(rec: KeypairRecord, info: Any) -> int:
        return await info.context.loaders.live_count.load(rec.access_key)  # type: ignore[no-any-return]

    @staticmethod
    async def resolve_vfolders(rec: KeypairRecord, info: Any) -> list[VFolderRecord]:
        return await info.context.loaders.vfolders_of.load(rec.access_key)  # type: ignore[no-any-return]

    @staticmethod
    async def resolve_compute_sessions(rec: KeypairRecord, info: Any,
                                       status: str | None = None) -> list[SessionRecord]:
        key = (rec.access_key, status)
        return await info.context.loaders.sessions_of.load(key)  # type: ignore[no-any-return]


class KVPair(graphene.ObjectType):
    key = String()
    value = String()


class ResourceLimit(graphene.ObjectType):
    key = String()
    min = String()
    max = String()


# the labels common/slots.py granted_slots sizes sessions by (GPU limits are shown only)
LIMIT_LABELS = ((CPU, LABEL_MINCORES, LABEL_MAXCORES), (MEM, LABEL_MINMEM, LABEL_MAXMEM),
                (GPU, "ai.backend.mingpus", "ai.backend.maxgpus"))


class Image(graphene.ObjectType):
    name = String()
    tag = String()
    hash = String()
    reference = String()
    labels = List(KVPair)
    resource_limits = List(ResourceLimit)
    installed = Boolean(resolver=lambda r, _i: bool(r.installed_agents))
    installed_agents = List(String)

    @staticmethod
    def resolve_labels(rec: ImageRecord, _info: Any) -> list[dict[str, str]]:
        return [{"key": k, "value": v} for k, v in sorted(rec.labels.items())]

    @staticmethod
    def resolve_resource_limits(rec: ImageRecord, _info: Any) -> list[dict[str, Any]]:
        return [{"key": key, "min": rec.labels.get(lo), "max": rec.labels.get(hi)}
                for key, lo, hi in LIMIT_LABELS if lo in rec.labels or hi in rec.labels]


async def _usage(rec: AgentRecord, info: Any) -> AgentUsage:
    return await info.context.loaders.agent_usage.load(rec.id)  # type: ignore[no-any-return]


class Agent(graphene.ObjectType):
    id = String()
    status = String()
    region = String()
    addr = String()
    version = String()
    first_contact = DateTime()
    last_heartbeat = DateTime()
    lost_at = DateTime()
    cpu_slots = Float(resolver=lambda r, _i: r.capacity.cpu)
    mem_slots = Int(resolver=lambda r, _i: r.capacity.mem, description="MiB")
    gpu_slots = Float(resolver=lambda r, _i: r.capacity.gpu)
    used_cpu_slots = Float()
    used_mem_slots = Int(description="MiB")
    used_gpu_slots = Float()
    mem_cur_bytes = BigInt()
    cpu_cur_pct = Float(description="not measured yet: always null")
    num_sessions = Int()
    scaling_group = String(description="the agent group it joined")

    @staticmethod
    async def resolve_used_cpu_slots(rec: AgentRecord, info: Any) -> float:
        return (await _usage(rec, info)).slots.cpu

    @staticmethod
    async def resolve_used_mem_slots(rec: AgentRecord, info: Any) -> int:
        return (await _usage(rec, info)).slots.mem

    @staticmethod
    async def resolve_used_gpu_slots(rec: AgentRecord, info: Any) -> float:
        return (await _usage(rec, info)).slots.gpu

    @staticmethod
    async def resolve_mem_cur_bytes(rec: AgentRecord, info: Any) -> int:
        return (await _usage(rec, info)).mem_cur_bytes

    @staticmethod
    async def resolve_num_sessions(rec: AgentRecord, info: Any) -> int:
        return (await _usage(rec, info)).sessions

    @staticmethod
    def resolve_cpu_cur_pct(_rec: AgentRecord, _info: Any) -> None:
        return None
