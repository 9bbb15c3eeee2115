"""Assembling the manager's aiohttp application and its services (cleanup_ctx)."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from aiohttp.web_urldispatcher import MatchInfoError
from sqlalchemy.exc import SQLAlchemyError

from common.config import ConfigError
from common.errors import ServiceUnavailable
from manager import linkkeys
from manager.api import admin, console, files, kernel, version, vfolders
from manager.api.auth import auth_middleware
from manager.api.console_sessions import console_sessions_ctx
from manager.api.keys import (
    CONFIG,
    CONTROL,
    COUNTER,
    CREATOR,
    DB,
    EVENTS,
    FILES,
    KEYPAIRS,
    REGISTRY,
)
from manager.api.problems import problem_middleware
from manager.api.ratelimit import add_headers, ratelimit_ctx, ratelimit_middleware
from manager.config import ManagerConfig
from manager.db.engine import make_engine
from manager.events import EventBus
from manager.registry import AgentRegistry
from manager.services.control import SessionControl
from manager.services.files import SessionFiles
from manager.services.keypairs import KeypairStore
from manager.services.routes import QueryCounter, RouteCache
from manager.services.sessions import SessionCreator

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 3.0


@web.middleware
async def method_override_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """``POST`` + ``X-Method-Override: M`` is handled as ``M`` (seed 004 §2.6.1)."""
    override = request.headers.get("X-Method-Override")
    if request.method != "POST" or not override:
        return await handler(request)
    clone = request.clone(method=override.strip().upper())
    match = await request.app.router.resolve(clone)
    if isinstance(match, MatchInfoError):
        raise match.http_exception
    match.add_app(request.app)
    clone._match_info = match  # aiohttp offers no public way to re-route a clone
    return await match.handler(clone)


async def _db_ctx(app: web.Application) -> AsyncIterator[None]:
    engine = make_engine(app[CONFIG].db.url)
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1 FROM keypairs LIMIT 1"))
    except (SQLAlchemyError, OSError) as e:
        await engine.dispose()
        raise ServiceUnavailable(f"cannot use the database (did you run init-db?): "
                                 f"{type(e).__name__}: {str(e).splitlines()[0]}") from None
    app[DB] = engine
    yield
    await engine.dispose()


async def _events_ctx(app: web.Application) -> AsyncIterator[None]:
    app[EVENTS] = await EventBus.connect(app[CONFIG].redis.url)
    yield
    await app[EVENTS].close()


async def _registry_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    secret, public = linkkeys.load(config.link)
    try:
        token = config.link.read_join_token()
    except (ValueError, OSError) as e:
        raise ConfigError(str(e)) from None
    routes = RouteCache()
    registry = AgentRegistry(config.link, app[DB], app[EVENTS], token, routes.forget)
    registry.start(secret, public)
    app[REGISTRY] = registry
    counter = QueryCounter()
    app[COUNTER] = counter
    app[KEYPAIRS] = KeypairStore(app[DB])
    app[CREATOR] = SessionCreator(config, app[DB], registry, app[EVENTS])
    app[CONTROL] = SessionControl(config, app[DB], registry, app[EVENTS], routes, counter)
    app[FILES] = SessionFiles(app[CONTROL])
    flusher = asyncio.ensure_future(_flush_loop(app))
    yield
    flusher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await flusher
    with contextlib.suppress(Exception):
        await counter.flush(app[DB])
    await registry.close()


async def _flush_loop(app: web.Application) -> None:
    while True:
        await asyncio.sleep(FLUSH_INTERVAL)
        try:
            await app[COUNTER].flush(app[DB])
        except Exception:
            log.exception("cannot flush query counters")


def build_app(config: ManagerConfig) -> web.Application:
    app = web.Application(middlewares=[
        problem_middleware, ratelimit_middleware, version.version_middleware,
        auth_middleware, method_override_middleware,
    ])
    app.on_response_prepare.append(add_headers)
    app[CONFIG] = config
    app.cleanup_ctx.extend([_db_ctx, _events_ctx, ratelimit_ctx, _registry_ctx,
                            console_sessions_ctx])
    version.add_routes(app)
    kernel.add_routes(app)
    files.add_routes(app)
    admin.add_routes(app)
    console.add_routes(app)
    vfolders.add_routes(app)
    return app
