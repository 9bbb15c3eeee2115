"""Per-request batch loaders: every object of a result page asks its loader, and each
loader turns one event-loop tick of requests into one query (no N+1). Root lists
(images, agents, …) go through ``SharedReads``: one read per distinct argument tuple
however many aliases ask for it."""
from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from aiodataloader import DataLoader, Loader, dispatch_queue
from sqlalchemy.ext.asyncio import AsyncEngine

from manager.graphql import queries
from manager.graphql.pacing import Pacer
from manager.graphql.records import AgentUsage, KeypairRecord, SessionRecord, VFolderRecord

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class MappedLoader(DataLoader, Generic[K, V]):  # type: ignore[misc]
    """A DataLoader over a ``keys → {key: value}`` query with a default for misses,
    dispatching when the request's pacer has released every list slice (so a paced
    list still costs one statement per loader)."""

    def __init__(self, fetch: Callable[[list[K]], Awaitable[Mapping[K, V]]],
                 default: Callable[[], V], pacer: Pacer) -> None:
        super().__init__(cache=True)
        self._fetch = fetch
        self._default = default
        self._pacer = pacer

    def do_resolve_reject(self, key: K, future: asyncio.Future[V]) -> None:
        # aiodataloader's own scheduling, with the pacer deciding when to dispatch
        self._queue.append(Loader(key=key, future=future))
        if len(self._queue) == 1:
            self._pacer.after_release(lambda: dispatch_queue(self))

    async def batch_load_fn(self, keys: list[K]) -> list[V]:
        found = await self._fetch(keys)
        return [found.get(k, self._default()) for k in keys]


class SharedReads:
    """``read(fn, *args)`` = ``fn(engine, *args)``, computed once per request."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._started: dict[tuple[Any, ...], asyncio.Future[Any]] = {}

    def read(self, fn: Callable[..., Awaitable[V]], *args: Hashable) -> Awaitable[V]:
        key = (fn, *args)
        found = self._started.get(key)
        if found is None:
            found = asyncio.ensure_future(fn(self._engine, *args))
            self._started[key] = found
        return found


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
    reads: SharedReads

    @classmethod
    def create(cls, engine: AsyncEngine, pacer: Pacer) -> Loaders:
        def bind(fn: Callable[[AsyncEngine, Iterable[Any]], Awaitable[Mapping[Any, Any]]]
                 ) -> Callable[[list[Any]], Awaitable[Mapping[Any, Any]]]:
            return lambda keys: fn(engine, keys)

        return cls(
            keypair=MappedLoader(bind(queries.keypairs_by_key), _none, pacer),
            live_count=MappedLoader(bind(queries.live_session_counts), int, pacer),
            sessions_of=MappedLoader(bind(queries.sessions_by_owner), list, pacer),
            session=MappedLoader(bind(queries.sessions_by_id), _none, pacer),
            vfolders_of=MappedLoader(bind(queries.vfolders_by_key), list, pacer),
            agent_usage=MappedLoader(bind(queries.agent_usage), AgentUsage, pacer),
            reads=SharedReads(engine),
        )
