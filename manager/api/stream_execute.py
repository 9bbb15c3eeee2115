"""``/stream/kernel/{id}/execute``: a run's console items as the runner produces them.

The client's first frame is ``{code, mode, options}`` (as ``kernel.stream_execute()``
of client 18.12.3 sends it; checked by the REST execute rules); the manager makes the
run id. Each server frame is an Execution Result Object plus ``seq`` (from 1) and
``runId``; after the final status the socket closes normally. Every later client
frame answers ``waiting-input``: ``{"input": ...}``, ``{"code": ...}`` or a raw string.
A client that lost its socket reconnects with ``?runId=<id>&after=<last seq seen>``
(no first frame then) and receives exactly what it missed.
"""
from __future__ import annotations

from typing import Any

import orjson
from aiohttp import WSMessage, web

from common.errors import InvalidAPIParameters, KrakenError
from common.ids import new_run_id
from common.streams import RUN_FINAL_STATUSES
from manager.api.keys import COUNTER
from manager.api.schemas import parse_execute
from manager.api.stream_ws import (
    Hangup,
    check_upgrade,
    close,
    counted,
    ended_with_error,
    error_frame,
    running_session,
    serve,
    start,
)
from manager.services.routes import Route
from manager.streams import Event, Relay

FIRST_FRAME_TIMEOUT = 30.0
STREAM_MODES = ("query", "batch")
MAX_RUN_ID = 128
MAX_SEQ_DIGITS = 15


def _resume_params(request: web.Request) -> dict[str, Any] | None:
    run_id = request.query.get("runId")
    if run_id is None:
        if "after" in request.query:
            raise InvalidAPIParameters("'after' needs 'runId'")
        return None
    after = request.query.get("after", "0")
    if not run_id or len(run_id) > MAX_RUN_ID:
        raise InvalidAPIParameters(f"'runId' must be 1-{MAX_RUN_ID} characters")
    if not after.isdigit() or len(after) > MAX_SEQ_DIGITS:
        raise InvalidAPIParameters("'after' must be a sequence number (0 or more)")
    return {"run_id": run_id, "after_seq": int(after)}


def _first_frame(msg: WSMessage | None) -> dict[str, Any]:
    """The run the first client frame asks for, by the REST execute rules."""
    if msg is None or msg.type != web.WSMsgType.TEXT:
        raise InvalidAPIParameters("the first frame must be TEXT JSON {code, mode, options}")
    try:
        body = orjson.loads(msg.data)
    except orjson.JSONDecodeError:
        raise InvalidAPIParameters("the first frame is not JSON") from None
    if not isinstance(body, dict):
        raise InvalidAPIParameters("the first frame must be a JSON object")
    body.pop("runId", None)  # the manager makes the run id
    spec = parse_execute(body)
    if spec.mode not in STREAM_MODES:
        raise InvalidAPIParameters(f"a streamed execute runs in {' or '.join(STREAM_MODES)} "
                                   "mode; later frames answer waiting-input")
    return {"mode": spec.mode, "code": spec.code, "options": spec.options,
            "run_id": new_run_id()}


def input_text(msg: WSMessage) -> str:
    """A waiting-input answer: {"input": ...}, {"code": ...} or the frame's text."""
    raw = msg.data if isinstance(msg.data, str) else bytes(msg.data).decode("utf-8", "replace")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw
    if isinstance(body, dict):
        for key in ("input", "code"):
            if isinstance(body.get(key), str):
                return str(body[key])
    return body if isinstance(body, str) else raw


async def _receive_first(ws: web.WebSocketResponse) -> WSMessage | None:
    try:
        msg = await ws.receive(FIRST_FRAME_TIMEOUT)
    except TimeoutError:
        return None
    return msg if msg.type in (web.WSMsgType.TEXT, web.WSMsgType.BINARY) else None


async def execute(request: web.Request) -> web.WebSocketResponse:
    row = await running_session(request)
    resume = _resume_params(request)
    ws = check_upgrade(request)
    relay = await start(request, row, "execute", resume) if resume else None
    try:
        await ws.prepare(request)
    except BaseException:
        if relay is not None:
            await relay.close("the WebSocket upgrade failed")
        raise
    if relay is None:
        relay = await _start_run(request, ws, row)
        if relay is None:
            return ws
    await _run(request, ws, relay, str(relay.info.get("run_id") or
                                        (resume or {}).get("run_id", "")))
    return ws


async def _start_run(request: web.Request, ws: web.WebSocketResponse, row: Any
                     ) -> Relay | None:
    first = await _receive_first(ws)
    if first is None and ws.closed:
        return None
    try:
        await counted(request, ws)
    except Hangup as e:
        await close(ws, e.code, e.reason)
        return None
    try:
        params = _first_frame(first)
        relay = await start(request, row, "execute", params)
    except KrakenError as e:
        await error_frame(ws, str(e))
        await close(ws)
        return None
    relay.info.setdefault("run_id", params["run_id"])
    request.app[COUNTER].count(Route(row.id, row.agent_id, row.access_key))
    return relay


async def _run(request: web.Request, ws: web.WebSocketResponse, relay: Relay,
               run_id: str) -> None:
    async def send(item: bytes | Event) -> bool:
        if not isinstance(item, Event):
            return True  # an execute stream carries events only
        await ws.send_str(orjson.dumps({**item.body, "seq": item.seq,
                                        "runId": run_id}).decode())
        return item.body.get("status") not in RUN_FINAL_STATUSES

    async def on_frame(msg: WSMessage) -> bool:
        await counted(request, ws)
        await relay.control({"type": "input", "text": input_text(msg)})
        return True

    await serve(request, ws, relay, send, ended_with_error(ws), on_frame)
