"""Per-request batch loaders: every object of a result page asks its loader, and each
loader turns one event-loop tick of requests into one query (no N+1)."""
from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from aiodataloader import DataLoader
from sqlalchemy.ext.asyncio import AsyncEngine

from manager.graphql import queries
from manager.graphql.records import AgentUsage, KeypairRecord, SessionRecord, VFolderRecord

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class MappedLoader(DataLoader, Generic[K, V]):  # type: ignore[misc]
    """A DataLoader over a ``keys → {key: value}`` query with a default for misses."""

    def __init__(self, fetch: Callable[[list[K]], Awaitable[Mapping[K, V]]],
                 default: Callable[[], V]) -> None:
        super().__init__(cache=True)
        self._fetch = fetch
        self._default = default

    async def batch_load_fn(self, keys: list[K]) -> list[V]:
        found = await self._fetch(keys)
        return [found.get(k, self._default()) for k in keys]


def _none() -> Any:
    return None


@dataclass(frozen=True, slots=True)
class Loaders:
    """The loaders of one GraphQL request (never shared between requests)."""

    keypair: MappedLoader[str, KeypairRecord | None]
    live_count: MappedLoader[str, int]
    sessions_of: MappedLoader[tuple[str, str | None], list[SessionRecord]]
    session: MappedLoader[uuid.UUID, SessionRecord | None]
    vfolders_of: MappedLoader[str, list[VFolderRecord]]
    agent_usage: MappedLoader[str, AgentUsage]

    @classmethod
    def create(cls, engine: AsyncEngine) -> Loaders:
        def bind(fn: Callable[[AsyncEngine, Iterable[Any]], Awaitable[Mapping[Any, Any]]]
                 ) -> Callable[[list[Any]], Awaitable[Mapping[Any, Any]]]:
            return lambda keys: fn(engine, keys)

        return cls(
            keypair=MappedLoader(bind(queries.keypairs_by_key), _none),
            live_count=MappedLoader(bind(queries.live_session_counts), int),
            sessions_of=MappedLoader(bind(queries.sessions_by_owner), list),
            session=MappedLoader(bind(queries.sessions_by_id), _none),
            vfolders_of=MappedLoader(bind(queries.vfolders_by_key), list),
            agent_usage=MappedLoader(bind(queries.agent_usage), AgentUsage),
        )
