"""``GET /ws?clientId=<id>`` (seed 001; also ``/atlas/ws``): the caller's job progress.

Authenticated by the access token (``token`` query or ``Authorization: Bearer``) or a v4
HMAC signature. Messages are ``{"status", "details"}`` objects: ``connected`` first,
``listening`` every keep-alive interval, ``progress`` for each progress line of a job of
THIS account submitted with this clientId, a final message per job (``progress`` 100 /
OK, or ``error`` with the reason), ``closed`` when the server shuts down. A client that
does not drain its bounded queue is dropped."""
from __future__ import annotations

import asyncio
import contextlib

from aiohttp import WSCloseCode, WSMsgType, web

from common.errors import BadJobRequest
from manager.atlas.form import CLIENT_ID
from manager.atlas.identity import Account, account_from_token, require_account
from manager.atlas.progress import Listener, ProgressHub

HUB = web.AppKey("kraken.atlas.progress", ProgressHub)
KEEPALIVE = web.AppKey("kraken.atlas.keepalive", float)
SOCKETS = web.AppKey("kraken.atlas.sockets", set)  # type: ignore[type-arg]
CONNECTED = {"status": "connected", "details": "server connected"}
LISTENING = {"status": "listening", "details": "server is listening"}
CLOSED = {"status": "closed", "details": "server is shutting down"}
DROPPED = {"status": "error", "details": "the client did not read its messages in time"}


async def _account(request: web.Request) -> Account:
    header = request.headers.get("Authorization", "")
    token = request.query.get("token") or (header[7:].strip()
                                           if header.lower().startswith("bearer ") else "")
    if token:
        return await account_from_token(request.app, token)
    return await require_account(request)


async def progress_socket(request: web.Request) -> web.StreamResponse:
    client_id = request.query.get("clientId", "")
    if not CLIENT_ID.match(client_id):
        raise BadJobRequest("'clientId' is required: 1-128 of A-Z a-z 0-9 . _ : -")
    account = await _account(request)
    ws = web.WebSocketResponse(heartbeat=None)
    await ws.prepare(request)
    request.app[SOCKETS].add(ws)
    try:
        with request.app[HUB].listen(account.id, client_id) as listener:
            await ws.send_json(CONNECTED)
            await _pump(ws, listener, request.app[KEEPALIVE])
    except (ConnectionResetError, RuntimeError):
        pass
    finally:
        request.app[SOCKETS].discard(ws)
        await ws.close()
    return ws


async def _pump(ws: web.WebSocketResponse, listener: Listener, keepalive: float) -> None:
    """Messages out, keep-alives in quiet periods, until the client goes or lags."""
    reader = asyncio.ensure_future(ws.receive())
    try:
        while not ws.closed:
            getter = asyncio.ensure_future(listener.queue.get())
            dropped = asyncio.ensure_future(listener.dropped.wait())
            done, _ = await asyncio.wait({getter, dropped, reader}, timeout=keepalive,
                                         return_when=asyncio.FIRST_COMPLETED)
            for task in (getter, dropped):
                task.cancel()
            if dropped in done:
                await ws.send_json(DROPPED)
                return
            if getter in done:
                await ws.send_json(getter.result())
            elif not done:
                await ws.send_json(LISTENING)
            if reader in done:
                if reader.result().type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    return  # closed by the client
                reader = asyncio.ensure_future(ws.receive())  # client chatter is ignored
    finally:
        reader.cancel()


async def close_sockets(app: web.Application) -> None:
    """on_shutdown: every socket gets ``closed`` before the server waits on it."""
    for ws in list(app.get(SOCKETS, ())):
        with contextlib.suppress(Exception):
            await ws.send_json(CLOSED)
            await ws.close(code=WSCloseCode.GOING_AWAY)


def add_routes(app: web.Application) -> None:
    app[SOCKETS] = set()
    app.on_shutdown.append(close_sockets)
    for path in ("/ws", "/atlas/ws", "/krako/ws"):
        app.router.add_get(path, progress_socket)
