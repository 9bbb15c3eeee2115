"""What every streaming WebSocket shares: the checks before the upgrade, the relay
pump agent → client with credit, frame rate limiting and the closing frames.

Before the upgrade (problem JSON, like any request): the caller was authenticated by
the auth middleware (signature, or the console cookie plus ``csrf`` and Origin) and
the handshake counted against its rate limit; the session must be the caller's (404)
and RUNNING (409); parameters are checked (400); the agent must accept the stream
(its refusal, e.g. 404 service-not-found, is the answer).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import WSCloseCode, WSMessage, web

from common.errors import InvalidAPIParameters, KernelNotRunning, RateLimitExceeded
from common.status import SessionStatus
from manager.api.auth import caller
from manager.api.keys import CONTROL, STREAMS
from manager.api.ratelimit import limit_keypair
from manager.streams import Closed, Event, Relay

log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 1 << 20  # one client frame
HEARTBEAT = 30.0  # WebSocket pings: a vanished client is noticed
CLOSE_MESSAGE_BYTES = 120  # a close frame's reason is at most 123 bytes

SendItem = Callable[[bytes | Event], Awaitable[bool]]  # False: the stream is done


async def running_session(request: web.Request) -> Any:
    """The caller's session named in the path, RUNNING, or the refusal."""
    row = await request.app[CONTROL].find(caller(request), request.match_info["id"])
    if row.status != SessionStatus.RUNNING:
        raise KernelNotRunning(f"session {request.match_info['id']!r} is {row.status}, "
                               "not RUNNING")
    return row


def check_upgrade(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(max_msg_size=MAX_FRAME_BYTES, heartbeat=HEARTBEAT)
    if not ws.can_prepare(request).ok:
        raise InvalidAPIParameters("this endpoint needs a WebSocket upgrade (GET with "
                                   "Connection: Upgrade, Upgrade: websocket)")
    return ws


async def start(request: web.Request, row: Any, kind: str, params: dict[str, Any]) -> Relay:
    return await request.app[STREAMS].start(row.agent_id, str(row.id), kind, params)


class Hangup(Exception):
    """End the socket with this close code (after an error frame was sent)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


async def counted(request: web.Request, ws: web.WebSocketResponse) -> None:
    """Count one client frame against the caller's rate limit (seed 004 §2.12.6);
    over the limit: an error frame, then Hangup (close code 1008)."""
    try:
        await limit_keypair(request, caller(request))
    except RateLimitExceeded as e:
        await error_frame(ws, str(e))
        raise Hangup(WSCloseCode.POLICY_VIOLATION, "rate limit exceeded") from None


def client_gone(request: web.Request) -> Callable[[], bool]:
    """Whether the client's connection is gone (asked while the socket is not read)."""
    return lambda: request.transport is None or request.transport.is_closing()


async def error_frame(ws: web.WebSocketResponse, message: str) -> None:
    with contextlib.suppress(ConnectionError, RuntimeError):
        await ws.send_str(orjson.dumps({"type": "error", "data": message}).decode())


async def close(ws: web.WebSocketResponse, code: int = WSCloseCode.OK,
                reason: str = "") -> None:
    with contextlib.suppress(ConnectionError, RuntimeError):
        await ws.close(code=code, message=reason.encode()[:CLOSE_MESSAGE_BYTES])


async def downstream(ws: web.WebSocketResponse, relay: Relay, send: SendItem,
                     on_end: Callable[[str], Awaitable[None]]) -> None:
    """Agent → client: each item is sent (awaiting the socket's drain), then credited
    to the agent; the agent sends no more than one window ahead of the client."""
    try:
        await _pump(ws, relay, send, on_end)
    except Exception:
        log.exception("stream %s failed", relay.stream_id)
        await relay.close("the manager failed on this stream")
        await close(ws, WSCloseCode.INTERNAL_ERROR, "internal error")


async def _pump(ws: web.WebSocketResponse, relay: Relay, send: SendItem,
                on_end: Callable[[str], Awaitable[None]]) -> None:
    while True:
        item = await relay.next()
        if isinstance(item, Closed):
            await on_end(item.reason)
            return
        try:
            more = await send(item)
        except (ConnectionError, RuntimeError):
            await relay.close("the client went away")
            return
        await relay.passed_on(item)
        if not more:
            await relay.close("")
            await close(ws)
            return


async def serve(request: web.Request, ws: web.WebSocketResponse, relay: Relay,
                send: SendItem, on_end: Callable[[str], Awaitable[None]],
                on_frame: Callable[[WSMessage], Awaitable[bool]]) -> None:
    """Run both directions until either ends; the relay is always closed after.

    Client → agent is a paused producer: the next frame is read only once the
    previous one was sent within the agent's credit, so a fast client is held back
    by TCP."""
    down = asyncio.ensure_future(downstream(ws, relay, send, on_end))
    code, reason = int(WSCloseCode.OK), ""
    try:
        async for msg in ws:
            if msg.type not in (web.WSMsgType.TEXT, web.WSMsgType.BINARY):
                continue
            if not await on_frame(msg) or down.done():
                break
    except Hangup as e:
        code, reason = e.code, e.reason
    finally:
        down.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await down
        await relay.close("the client closed the stream")
        await close(ws, code, reason)


def ended_with_error(ws: web.WebSocketResponse) -> Callable[[str], Awaitable[None]]:
    """pty/execute: the reason as a final ``error`` frame, then a normal close."""
    async def on_end(reason: str) -> None:
        if reason:
            await error_frame(ws, reason)
        await close(ws)
    return on_end
