"""Live stats from agents (``kernel-stats-batch``, agent link v2): one message per agent
per interval with all its kernels' stats, stored in ``kernels.last_stat`` by one
statement per batch, so GraphQL sessions show current CPU and memory.

An agent can only write the stats of live sessions placed on it; only the known stats
keys with non-negative integer values are kept, and ``mem_max_bytes`` never goes down
(cgroup v2 reports no peak: the stored peak is the highest sample seen). Storing is
best-effort: a batch that meets a database outage is dropped (the next one replaces it),
and so is a batch that follows the agent's previous one within ``MIN_SPACING`` (a
misbehaving agent cannot turn its link into a stream of database writes).
"""
from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import orjson
import sqlalchemy as sa

from common.codec import Message
from common.link import PeerId
from common.msg_agent import KernelStatsBatch
from manager.db.tables import LIVE_STATUS_SQL
from manager.graphql.records import STAT_KEYS
from manager.outage import translate
from manager.registry import AgentRegistry

log = logging.getLogger(__name__)

MAX_KERNELS = 10_000  # per batch: far above what one agent holds
MAX_VALUE = 2**63 - 1
MIN_SPACING = 1.0  # seconds between two stored batches of one agent

# one statement: every kernel of the batch that is live on this agent
_STORE = sa.text(f"""
UPDATE kernels SET last_stat = b.value || jsonb_build_object('mem_max_bytes', GREATEST(
        COALESCE((kernels.last_stat ->> 'mem_max_bytes')::bigint, 0),
        COALESCE((b.value ->> 'mem_max_bytes')::bigint, 0)))
FROM jsonb_each(CAST(:batch AS jsonb)) AS b(key, value)
WHERE kernels.id = CAST(b.key AS uuid) AND kernels.agent_id = :agent
  AND kernels.{LIVE_STATUS_SQL}
""")


def clean(batch: Any) -> dict[str, dict[str, int]]:
    """The usable part of an agent's batch: uuid keys, known stats, sane integers."""
    out: dict[str, dict[str, int]] = {}
    if not isinstance(batch, dict):
        return out
    for kernel_id, stats in list(batch.items())[:MAX_KERNELS]:
        try:
            key = str(uuid.UUID(str(kernel_id)))
        except ValueError:
            continue
        if not isinstance(stats, dict):
            continue
        out[key] = {k: min(max(v, 0), MAX_VALUE) for k in STAT_KEYS
                    if isinstance(v := stats.get(k), int) and not isinstance(v, bool)}
    return out


class LiveStats:
    def __init__(self, registry: AgentRegistry) -> None:
        self._registry = registry
        self._stored: dict[str, float] = {}  # agent id → monotonic time of its last batch
        registry.add_handler(KernelStatsBatch, self.on_batch)

    async def on_batch(self, peer: PeerId, msg: Message) -> Message | None:
        assert isinstance(msg, KernelStatsBatch)
        agent_id = self._registry.agent_of(peer)
        batch = clean(msg.stats)
        if agent_id is None or not batch:
            return None
        now = time.monotonic()
        if now - self._stored.get(agent_id, float("-inf")) < MIN_SPACING:
            log.debug("live stats of %s dropped: sent too soon", agent_id)
            return None
        self._stored[agent_id] = now
        try:
            async with self._registry.engine.begin() as conn:
                await conn.execute(_STORE, {"batch": orjson.dumps(batch).decode(),
                                            "agent": agent_id})
        except Exception as e:
            if translate(e) is None:
                raise
            log.info("live stats of %s dropped: %s", agent_id, translate(e))
        return None
