"""The agent-link transport over real ZeroMQ with CurveZMQ (loopback)."""
from __future__ import annotations

import asyncio

import pytest
import zmq

from common.codec import Message
from common.errors import AgentTimeout, KernelNotFound
from common.link import DealerLink, PeerId, RouterLink, expect
from common.msg_agent import (
    AGENT_PROTOCOL,
    Ack,
    ErrorReply,
    Execute,
    ExecuteResult,
    Heartbeat,
    InterruptKernel,
)


async def test_request_reply_both_ways_over_curve() -> None:
    public, secret = zmq.curve_keypair()
    seen: list[Message] = []

    async def on_manager(peer: PeerId, msg: Message) -> Message | None:
        seen.append(msg)
        return Ack()

    async def on_agent(msg: Message) -> Message | None:
        assert isinstance(msg, Execute)
        if msg.kernel_id == "missing":
            return ErrorReply(error_type="kernel-not-found", detail="gone")
        await asyncio.sleep(0.05 if msg.code == "slow" else 0)
        return ExecuteResult(run_id=msg.run_id, status="finished", console=[["stdout", msg.code]])

    router = RouterLink(AGENT_PROTOCOL, "tcp://127.0.0.1:*", on_manager,
                        curve_secret_key=secret, curve_public_key=public)
    router.start()
    dealer = DealerLink(AGENT_PROTOCOL, router.endpoint, on_agent, server_public_key=public)
    dealer.start()
    try:
        reply = await dealer.request(InterruptKernel(kernel_id="k"), timeout=5)
        assert isinstance(reply, Ack)
        # learn the agent's routing id from a one-way message
        got: asyncio.Future[PeerId] = asyncio.get_running_loop().create_future()

        async def capture(p: PeerId, m: Message) -> None:
            got.set_result(p)
        router._handler = capture  # test seam: swap the handler
        await dealer.send(Heartbeat(agent_id="a", available_slots={}, occupied_slots={},
                                    kernels=[]))
        peer = await asyncio.wait_for(got, 5)
        # concurrent requests are answered independently (slow one does not block fast one)
        slow = asyncio.ensure_future(router.request(
            peer, Execute(kernel_id="k", run_id="1", mode="query", code="slow"), 5))
        fast = await router.request(
            peer, Execute(kernel_id="k", run_id="2", mode="query", code="fast"), 5)
        assert expect(fast, ExecuteResult).console == [["stdout", "fast"]]
        assert not slow.done()
        assert expect(await slow, ExecuteResult).run_id == "1"
        with pytest.raises(KernelNotFound):
            expect(await router.request(
                peer, Execute(kernel_id="missing", run_id="3", mode="query", code=""), 5),
                ExecuteResult)
    finally:
        await dealer.close()
        await router.close()


async def test_wrong_server_key_never_connects() -> None:
    public, secret = zmq.curve_keypair()
    other_public, _ = zmq.curve_keypair()

    async def on_manager(peer: PeerId, msg: Message) -> Message | None:
        return Ack()

    async def on_agent(msg: Message) -> Message | None:
        return None

    router = RouterLink(AGENT_PROTOCOL, "tcp://127.0.0.1:*", on_manager,
                        curve_secret_key=secret, curve_public_key=public)
    router.start()
    dealer = DealerLink(AGENT_PROTOCOL, router.endpoint, on_agent,
                        server_public_key=other_public)
    dealer.start()
    try:
        with pytest.raises(AgentTimeout):
            await dealer.request(InterruptKernel(kernel_id="k"), timeout=0.5)
    finally:
        await dealer.close()
        await router.close()


async def test_request_to_vanished_peer_fails_fast() -> None:
    async def handler(peer: PeerId, msg: Message) -> Message | None:
        return None

    router = RouterLink(AGENT_PROTOCOL, "tcp://127.0.0.1:*", handler)
    router.start()
    try:
        with pytest.raises(ConnectionError):
            await router.request(b"\x00nobody", InterruptKernel(kernel_id="k"), timeout=1)
    finally:
        await router.close()
