"""The agent-link transport over real ZeroMQ with CurveZMQ (loopback)."""
from __future__ import annotations

import asyncio

import pytest
import zmq

from common.codec import Message
from common.errors import AgentTimeout, KernelNotFound, PayloadTooLarge
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


async def test_fail_fast_dealer_never_waits_for_a_missing_peer() -> None:
    import socket
    import time

    from common.errors import ServiceUnavailable

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def on_agent(msg: Message) -> Message | None:
        return None

    dealer = DealerLink(AGENT_PROTOCOL, f"tcp://127.0.0.1:{port}", on_agent, fail_fast=True,
                        heartbeat_timeout=1.0)
    dealer.start()
    try:
        t0 = time.monotonic()
        with pytest.raises(ServiceUnavailable):
            await dealer.request(InterruptKernel(kernel_id="k"), timeout=30)
        with pytest.raises(ServiceUnavailable):
            await dealer.send(Heartbeat(agent_id="a", available_slots={}, occupied_slots={},
                                        kernels=[]))
        assert time.monotonic() - t0 < 1.0
    finally:
        await dealer.close()


async def test_fail_peer_fails_only_that_peers_requests_at_once() -> None:
    """A replaced or silent agent connection: its requests in flight fail now, with the
    error the caller chose; other peers' requests are untouched."""
    peers: list[PeerId] = []

    async def on_manager(peer: PeerId, msg: Message) -> Message | None:
        peers.append(peer)
        return None

    never = asyncio.Event()

    async def slow_agent(msg: Message) -> Message | None:
        await never.wait()
        return Ack()

    router = RouterLink(AGENT_PROTOCOL, "tcp://127.0.0.1:*", on_manager)
    router.start()
    dealers = [DealerLink(AGENT_PROTOCOL, router.endpoint, slow_agent) for _ in range(2)]
    try:
        for d in dealers:
            d.start()
            await d.send(Heartbeat(agent_id="a", available_slots={}, occupied_slots={},
                                   kernels=[]))
        for _ in range(100):
            if len(set(peers)) == 2:
                break
            await asyncio.sleep(0.02)
        first, second = list(dict.fromkeys(peers))
        doomed = [asyncio.ensure_future(router.request(first, InterruptKernel(kernel_id="k"),
                                                       timeout=30)) for _ in range(3)]
        other = asyncio.ensure_future(router.request(second, InterruptKernel(kernel_id="k"),
                                                     timeout=30))
        await asyncio.sleep(0.1)
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert router.fail_peer(first, lambda: KernelNotFound("gone")) == 3
        for task in doomed:
            with pytest.raises(KernelNotFound):
                await task
        assert loop.time() - started < 1.0
        assert not other.done()
        assert router.fail_peer(first, lambda: KernelNotFound("gone")) == 0  # idempotent
        never.set()
        assert isinstance(await other, Ack)
    finally:
        for d in dealers:
            await d.close()
        await router.close()


async def test_an_oversized_message_drops_only_its_sender(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """MAXMSGSIZE on the link: a peer sending a frame above the limit is disconnected;
    the manager end keeps serving every other agent. Limit lowered to 64 KiB here."""
    monkeypatch.setattr("common.link.MAX_MESSAGE_BYTES", 64 << 10)
    seen: list[Message] = []

    async def on_manager(peer: PeerId, msg: Message) -> Message | None:
        seen.append(msg)
        return Ack()

    async def on_agent(msg: Message) -> Message | None:
        return ExecuteResult(run_id="r", status="finished", console=[["stdout", "x" * 100_000]])

    router = RouterLink(AGENT_PROTOCOL, "tcp://127.0.0.1:*", on_manager)
    router.start()
    good = DealerLink(AGENT_PROTOCOL, router.endpoint, on_agent)
    good.start()
    ctx = zmq.Context()
    hostile = ctx.socket(zmq.DEALER)
    hostile.setsockopt(zmq.LINGER, 0)
    hostile.connect(router.endpoint)
    try:
        assert isinstance(await good.request(InterruptKernel(kernel_id="k"), timeout=5), Ack)
        hostile.send(AGENT_PROTOCOL.encode(InterruptKernel(kernel_id="k" * 200_000), 1))
        for _ in range(3):  # the router still answers the good agent
            assert isinstance(await good.request(InterruptKernel(kernel_id="k"), timeout=5), Ack)
        assert router._recv_task is not None and not router._recv_task.done()
        assert len(seen) == 4  # the oversized one never reached the handler
        # a reply above the limit is never sent: it becomes an ErrorReply
        got: asyncio.Future[PeerId] = asyncio.get_running_loop().create_future()

        async def capture(p: PeerId, m: Message) -> None:
            if not got.done():
                got.set_result(p)
        router._handler = capture
        await good.send(Heartbeat(agent_id="a", available_slots={}, occupied_slots={},
                                  kernels=[]))
        peer = await asyncio.wait_for(got, 5)
        reply = await router.request(
            peer, Execute(kernel_id="k", run_id="1", mode="query", code=""), 5)
        assert isinstance(reply, ErrorReply) and reply.error_type == "payload-too-large"
        with pytest.raises(PayloadTooLarge):  # nor is a request
            await router.request(peer, Execute(kernel_id="k", run_id="1", mode="query",
                                               code="c" * 100_000), 5)
    finally:
        hostile.close()
        ctx.term()
        await good.close()
        await router.close()
