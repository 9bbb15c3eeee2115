"""Streams ride on the manager connection they came on: the session passes itself to
dispatch, and a connection that drops or joins again is reported lost."""
from __future__ import annotations

import asyncio
from typing import Any

from agent.manager_link import ManagerSession
from common.codec import Message
from common.link import RouterLink
from common.msg_agent import (
    AGENT_PROTOCOL,
    Heartbeat,
    Join,
    JoinAccepted,
    Rejoin,
    StreamCredit,
)


class RecordingAgent:
    def __init__(self) -> None:
        self.got: asyncio.Queue[tuple[Message, ManagerSession]] = asyncio.Queue()
        self.lost: asyncio.Queue[ManagerSession] = asyncio.Queue()

    def join_message(self) -> Join:
        return Join(agent_id="a", token="t", region="r", version="0", available_slots={},
                    images=[], kernels=[])

    async def heartbeat_message(self) -> tuple[Heartbeat, list[dict[str, Any]]]:
        return Heartbeat(agent_id="a", available_slots={}, occupied_slots={}, kernels=[]), []

    async def on_join_accepted(self, accepted: JoinAccepted, reported: list[str]) -> None:
        return None

    async def dispatch(self, msg: Message, session: ManagerSession) -> Message | None:
        self.got.put_nowait((msg, session))
        return None

    def connection_lost(self, session: ManagerSession) -> None:
        self.lost.put_nowait(session)


class Replica:
    def __init__(self) -> None:
        self.peer: bytes | None = None
        self.joined = asyncio.Event()
        self.link = RouterLink(AGENT_PROTOCOL, "tcp://127.0.0.1:*", self._on)
        self.link.start()

    async def _on(self, peer: bytes, msg: Message) -> Message | None:
        if isinstance(msg, Join):
            self.peer = peer
            self.joined.set()
            return JoinAccepted(heartbeat_interval=0.05, keep_kernels=[])
        return None


async def test_messages_carry_their_session_and_lost_connections_are_reported() -> None:
    agent = RecordingAgent()
    a, b = Replica(), Replica()
    sessions = {r: ManagerSession(agent, r.link.endpoint, None, request_timeout=2)
                for r in (a, b)}
    for s in sessions.values():
        s.start()
    try:
        await asyncio.wait_for(asyncio.gather(a.joined.wait(), b.joined.wait()), 10)
        assert b.peer is not None and a.peer is not None
        await b.link.send(b.peer, StreamCredit(stream_id="s1", amount=5))
        msg, session = await asyncio.wait_for(agent.got.get(), 5)
        assert msg == StreamCredit(stream_id="s1", amount=5) and session is sessions[b]
        assert await sessions[b].send_stream(StreamCredit(stream_id="s1", amount=1))

        await a.link.send(a.peer, Rejoin())  # replica a restarted: a fresh join
        assert await asyncio.wait_for(agent.lost.get(), 5) is sessions[a]

        await b.link.close()  # replica b goes away: its connection drops
        assert await asyncio.wait_for(agent.lost.get(), 5) is sessions[b]
        assert not await sessions[b].send_stream(StreamCredit(stream_id="s1", amount=1))
    finally:
        for s in sessions.values():
            await s.close()
        await a.link.close()
