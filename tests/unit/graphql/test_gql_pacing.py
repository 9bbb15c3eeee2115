"""The pacer releases long lists a slice per event-loop turn and lets loaders dispatch
only once every slice handed out is released."""
from __future__ import annotations

import asyncio

from manager.graphql.pacing import Pacer


async def test_gql_pacer_short_lists_are_untouched() -> None:
    pacer = Pacer(chunk=4)
    assert pacer.pace([1, 2]) == [1, 2]
    assert pacer.pace(iter([3, 4])) == [3, 4]


async def test_gql_pacer_releases_one_slice_per_turn() -> None:
    pacer = Pacer(chunk=4)
    items = pacer.pace(range(10))
    assert items[:4] == [0, 1, 2, 3]
    released: list[tuple[int, int]] = []  # (turn, value)
    turn = 0

    async def wait(item: object) -> None:
        value = await item  # type: ignore[misc]
        released.append((turn, value))

    waiters = [asyncio.ensure_future(wait(i)) for i in items[4:]]
    while not all(w.done() for w in waiters):
        await asyncio.sleep(0)
        turn += 1
    assert [v for _, v in released] == [4, 5, 6, 7, 8, 9]
    turns = {v: t for t, v in released}
    assert turns[4] == turns[7] < turns[8] == turns[9]  # slices of 4, in order


async def test_gql_pacer_loader_dispatch_waits_for_all_slices() -> None:
    pacer = Pacer(chunk=2)
    calls: list[str] = []
    pacer.after_release(lambda: calls.append("idle"))  # nothing pending: next turn
    await asyncio.sleep(0)
    assert calls == ["idle"]
    gated = pacer.pace(range(8))[2:]
    pacer.after_release(lambda: calls.append("after"))
    results = []
    for item in gated:
        results.append(await item)  # type: ignore[misc]
        assert "after" not in calls or len(results) == len(gated)
    for _ in range(3):
        await asyncio.sleep(0)
    assert results == [2, 3, 4, 5, 6, 7] and calls == ["idle", "after"]
