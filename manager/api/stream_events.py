"""``/stream/kernel/{id}/events`` (seed 004 §2.12.5): a session's lifecycle, read-only.

First the status changes already stored, then those any replica publishes on Redis
(``kraken.events``, fanned out by this replica's one subscriber: manager.streams),
each as ``{"name": "status", "status", "from", "reason", "at"}``; a return from
RESTARTING adds ``{"name": "restarted", "reason"}`` and a final status adds
``{"name": "terminated", "reason"}`` (e.g. ``out-of-memory``, ``idle-timeout``,
``user-requested``), after which the socket closes normally. Client frames are not
read as commands; each still counts against the rate limit (§2.12.6).
"""
from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from typing import Any

import orjson
from aiohttp import WSCloseCode, web

from common.status import FINAL_STATUSES, SessionStatus
from manager.api.keys import DB, STREAMS
from manager.api.stream_ws import Hangup, check_upgrade, close, counted, running_session
from manager.replica import public_info
from manager.services.lifecycle import Transition, history


def objects(event: dict[str, Any]) -> list[dict[str, Any]]:
    """The events-stream objects of one ``kernel-status`` event."""
    reason = public_info(event.get("reason"))
    out = [{"name": "status", "status": event.get("to"), "from": event.get("from"),
            "reason": reason, "at": event.get("at")}]
    if event.get("from") == SessionStatus.RESTARTING and event.get("to") == "RUNNING":
        out.append({"name": "restarted", "reason": reason or "restarted"})
    if event.get("to") in FINAL_STATUSES:
        out.append({"name": "terminated", "reason": reason or str(event["to"]).lower()})
    return out


def _at(event: dict[str, Any]) -> datetime | None:
    with contextlib.suppress(TypeError, ValueError):
        return datetime.fromisoformat(str(event.get("at")))
    return None


async def events(request: web.Request) -> web.WebSocketResponse:
    row = await running_session(request)
    ws = check_upgrade(request)
    hub = request.app[STREAMS]
    queue = hub.watch(str(row.id))  # before reading the history: nothing falls between
    try:
        async with request.app[DB].connect() as conn:
            stored: list[Transition] = await history(conn, row.id)
        await ws.prepare(request)
        tasks = [asyncio.ensure_future(_send_all(ws, queue, stored)),
                 asyncio.ensure_future(_ignore_frames(request, ws))]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        hub.unwatch(str(row.id), queue)
    await close(ws)
    return ws


async def _send_all(ws: web.WebSocketResponse, queue: asyncio.Queue[dict[str, Any] | None],
                    stored: list[Transition]) -> None:
    last = stored[-1].at if stored else None
    for t in stored:
        if not await _send(ws, t.to_event()):
            return
    while not ws.closed:
        event = await queue.get()
        if event is None:
            await close(ws, WSCloseCode.TRY_AGAIN_LATER, "events stopped here; reconnect")
            return
        at = _at(event)
        if last is not None and at is not None and at <= last:
            continue  # already sent from the stored history
        if not await _send(ws, event):
            return


async def _send(ws: web.WebSocketResponse, event: dict[str, Any]) -> bool:
    """Send the objects of one event; False once the stream is over."""
    for obj in objects(event):
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.send_str(orjson.dumps(obj).decode())
        if obj["name"] == "terminated" or ws.closed:
            return False
    return True


async def _ignore_frames(request: web.Request, ws: web.WebSocketResponse) -> None:
    """Read-only: frames are counted and dropped; the client leaving ends the stream."""
    try:
        async for _msg in ws:
            await counted(request, ws)
    except Hangup as e:
        await close(ws, e.code, e.reason)
