"""``/stream/kernel/{id}/...`` (seed 004 §2.12): terminals and service proxies here,
streamed execute in ``stream_execute``, lifecycle events in ``stream_events``.
docs/api.md "Streaming" describes the frames."""
from __future__ import annotations

import base64
import binascii
import re
from typing import Any

import orjson
from aiohttp import WSCloseCode, WSMessage, web

from common.errors import InvalidAPIParameters
from common.streams import DEFAULT_TERM
from manager.api import stream_events, stream_execute
from manager.api.stream_ws import (
    check_upgrade,
    client_gone,
    close,
    counted,
    ended_with_error,
    error_frame,
    running_session,
    serve,
    start,
)
from manager.api.version import PREFIXES
from manager.streams import Event

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # a terminal or service name
MAX_ROWS_COLS = 1000
PTY_CONTROLS = frozenset({"ping", "restart"})


def _name(request: web.Request, *keys: str, default: str | None = None) -> str:
    value = next((request.query[k] for k in keys if k in request.query), default)
    if value is None:
        raise InvalidAPIParameters(f"the query parameter {keys[0]!r} is required")
    if not NAME.match(value):
        raise InvalidAPIParameters(f"{keys[0]!r} must be 1-64 characters of A-Z a-z 0-9 . _ - "
                                   "starting with a letter or digit")
    return value


def size(value: Any, what: str) -> int:
    """A terminal dimension: an integer from 1 to MAX_ROWS_COLS."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or \
            not 1 <= value <= MAX_ROWS_COLS:
        raise InvalidAPIParameters(f"'{what}' must be an integer from 1 to {MAX_ROWS_COLS}")
    return value


# ---- terminal ---------------------------------------------------------------------


async def pty(request: web.Request) -> web.WebSocketResponse:
    row = await running_session(request)
    params = {"term": _name(request, "service", default=DEFAULT_TERM),
              "rows": size(request.query.get("rows", "24"), "rows"),
              "cols": size(request.query.get("cols", "80"), "cols")}
    ws = check_upgrade(request)
    relay = await start(request, row, "pty", params)
    try:
        await ws.prepare(request)
    except BaseException:
        await relay.close("the WebSocket upgrade failed")
        raise

    async def send(item: bytes | Event) -> bool:
        if isinstance(item, bytes):  # a terminal stream carries bytes only
            data = base64.b64encode(item).decode()
            await ws.send_str(orjson.dumps({"type": "out", "data": data}).decode())
        return True

    async def on_frame(msg: WSMessage) -> bool:
        try:
            frame = orjson.loads(msg.data)
        except orjson.JSONDecodeError:
            frame = None
        if not isinstance(frame, dict):
            await error_frame(ws, "frames are TEXT JSON objects with a 'type'")
            return True
        if frame.get("type") == "stdin":  # keystrokes are not rate limited (§2.12.6)
            return await _stdin(request, ws, relay, frame.get("chars"))
        await counted(request, ws)
        await _pty_command(ws, relay, frame)
        return True

    await serve(request, ws, relay, send, ended_with_error(ws), on_frame)
    return ws


async def _stdin(request: web.Request, ws: web.WebSocketResponse, relay: Any,
                 chars: Any) -> bool:
    try:
        data = base64.b64decode(chars, validate=True) if isinstance(chars, str) else None
    except (binascii.Error, ValueError):
        data = None
    if data is None:
        await error_frame(ws, "'chars' of a stdin frame must be base64")
        return True
    return bool(await relay.send_data(data, client_gone(request)))


async def _pty_command(ws: web.WebSocketResponse, relay: Any, frame: dict[str, Any]) -> None:
    kind = frame.get("type")
    if kind == "resize":
        try:
            rows, cols = size(frame.get("rows"), "rows"), size(frame.get("cols"), "cols")
        except InvalidAPIParameters as e:
            await error_frame(ws, str(e))
            return
        await relay.resize(rows, cols)
    elif kind in PTY_CONTROLS:
        await relay.control({"type": kind})
    else:
        await error_frame(ws, f"unknown frame type {str(kind)[:40]!r}; expected stdin, "
                          "resize, ping or restart")


# ---- service proxies --------------------------------------------------------------


async def _proxy(request: web.Request, protocol: str) -> web.WebSocketResponse:
    row = await running_session(request)
    service = _name(request, "service", "app")
    ws = check_upgrade(request)
    relay = await start(request, row, "proxy", {"service": service, "protocol": protocol})
    try:
        await ws.prepare(request)
    except BaseException:
        await relay.close("the WebSocket upgrade failed")
        raise

    async def send(item: bytes | Event) -> bool:
        if isinstance(item, bytes):  # a proxy stream carries bytes only
            await ws.send_bytes(item)
        return True

    async def on_end(reason: str) -> None:
        if reason:
            await close(ws, WSCloseCode.INTERNAL_ERROR, reason)
        else:
            await close(ws)

    async def on_frame(msg: WSMessage) -> bool:
        data = msg.data if isinstance(msg.data, bytes) else str(msg.data).encode()
        return bool(await relay.send_data(data, client_gone(request)))

    await serve(request, ws, relay, send, on_end, on_frame)
    return ws


async def httpproxy(request: web.Request) -> web.WebSocketResponse:
    return await _proxy(request, "http")


async def tcpproxy(request: web.Request) -> web.WebSocketResponse:
    return await _proxy(request, "tcp")


def add_routes(app: web.Application) -> None:
    for prefix in PREFIXES:
        base = f"{prefix}/stream/kernel/{{id}}"
        app.router.add_get(f"{base}/pty", pty)
        app.router.add_get(f"{base}/execute", stream_execute.execute)
        app.router.add_get(f"{base}/events", stream_events.events)
        app.router.add_get(f"{base}/httpproxy", httpproxy)
        app.router.add_get(f"{base}/tcpproxy", tcpproxy)
