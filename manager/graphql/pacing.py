"""Completing a long GraphQL result a slice per event-loop turn.

graphql-core completes the items of a list synchronously, so a result of 2,500
sessions × 28 fields once held the event loop for 1.5 s and stalled every other
request. It does, however, await list items that are awaitable. ``Pacer`` hands out
the items of object lists past the first ``CHUNK`` of a request as awaitables that
open one slice of ``CHUNK`` items per event-loop turn; between turns the loop serves
other requests. A request that stays under ``CHUNK`` list items is not touched.

Batch loaders dispatch through ``Pacer.after_release``: a loader waits until every
slice handed out so far is released, so all items of a list still share one SQL
statement per loader even though they are completed over several turns.
"""
from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Generator, Iterable
from typing import Any

from graphql import (
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    get_named_type,
)

CHUNK = 32  # list items completed per event-loop turn (32 sessions × 28 fields ≈ 8 ms)


class _Gated:
    """An item that becomes available when its slice's gate opens."""

    __slots__ = ("_gate", "_value")

    def __init__(self, gate: asyncio.Future[None], value: Any) -> None:
        self._gate = gate
        self._value = value

    def __await__(self) -> Generator[Any, None, Any]:
        yield from self._gate.__await__()
        return self._value


class Pacer:
    """The list items of one request, released ``chunk`` per event-loop turn."""

    def __init__(self, chunk: int = CHUNK) -> None:
        self._chunk = chunk
        self._handed = 0
        self._gates: list[asyncio.Future[None]] = []
        self._opened = 0
        self._driver: asyncio.Future[None] | None = None
        self._waiting: list[Callable[[], None]] = []

    def pace(self, items: Iterable[Any]) -> list[Any]:
        values = list(items)
        first = self._handed
        self._handed += len(values)
        if self._handed <= self._chunk:
            return values
        return [v if first + i < self._chunk else _Gated(self._gate((first + i) // self._chunk), v)
                for i, v in enumerate(values)]

    def after_release(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` soon after every slice handed out so far is released."""
        if self._opened == len(self._gates):
            asyncio.get_running_loop().call_soon(callback)
        else:
            self._waiting.append(callback)

    def _gate(self, index: int) -> asyncio.Future[None]:
        while len(self._gates) < index:
            self._gates.append(asyncio.get_running_loop().create_future())
        if self._driver is None or self._driver.done():
            self._driver = asyncio.ensure_future(self._open_gates())
        return self._gates[index - 1]

    async def _open_gates(self) -> None:
        while self._opened < len(self._gates):
            await asyncio.sleep(0)
            self._gates[self._opened].set_result(None)
            self._opened += 1
        waiting, self._waiting = self._waiting, []
        for callback in waiting:
            asyncio.get_running_loop().call_soon(callback)


def _is_object_list(out_type: GraphQLOutputType) -> bool:
    if isinstance(out_type, GraphQLNonNull):
        out_type = out_type.of_type
    return isinstance(out_type, GraphQLList) and isinstance(get_named_type(out_type),
                                                            GraphQLObjectType)


class PacingMiddleware:
    """graphql-core middleware passing every object list through ``context.pacer``."""

    def resolve(self, next_: Callable[..., Any], root: Any, info: GraphQLResolveInfo,
                **args: Any) -> Any:
        result = next_(root, info, **args)
        if not _is_object_list(info.return_type):
            return result
        pacer: Pacer = info.context.pacer
        if inspect.isawaitable(result):
            return _pace_later(pacer, result)
        return None if result is None else pacer.pace(result)


async def _pace_later(pacer: Pacer, pending: Any) -> list[Any] | None:
    value = await pending
    return None if value is None else pacer.pace(value)
