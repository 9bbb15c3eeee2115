"""The transfer gate: slots per keypair and per agent, a short wait, then 429."""
from __future__ import annotations

import asyncio

import pytest

from common.errors import TooManyTransfers
from manager.config import TransfersConfig
from manager.services.transfers import TransferGate


async def test_bounds_per_key_and_cleanup() -> None:
    gate = TransferGate(TransfersConfig(per_keypair=2, per_agent=3, wait=0.05))
    async with gate.slot("keypair:A", "agent:x"), gate.slot("keypair:A", "agent:x"):
        with pytest.raises(TooManyTransfers) as caught:
            async with gate.slot("keypair:A", "agent:x"):
                pass
        assert caught.value.status == 429 and "keypair" in str(caught.value)
        async with gate.slot("keypair:B", "agent:x"):  # the agent's third slot
            with pytest.raises(TooManyTransfers, match="agent"):
                async with gate.slot("keypair:C", "agent:x"):
                    pass
        async with gate.slot("keypair:B", "agent:y"):
            pass
    assert gate.in_use() == 0


async def test_a_waiter_gets_a_freed_slot() -> None:
    gate = TransferGate(TransfersConfig(per_keypair=1, wait=5.0))
    release = asyncio.Event()

    async def holder() -> None:
        async with gate.slot("keypair:A"):
            await release.wait()

    task = asyncio.ensure_future(holder())
    await asyncio.sleep(0)
    asyncio.get_running_loop().call_later(0.05, release.set)
    async with gate.slot("keypair:A"):
        assert task.done()
    assert gate.in_use() == 0
