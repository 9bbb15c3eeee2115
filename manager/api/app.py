"""Assembling the manager's aiohttp application and its services (cleanup_ctx)."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from aiohttp import web
from aiohttp.web_urldispatcher import MatchInfoError
from sqlalchemy.exc import SQLAlchemyError

from common.config import ConfigError
from common.errors import ServiceUnavailable
from common.filemodes import warn_if_loose
from manager import linkkeys, secretbox
from manager.api import (
    admin,
    console,
    files,
    health,
    kernel,
    nodes,
    resource,
    stream,
    usage,
    version,
    vfolders,
)
from manager.api.auth import NONCE_TTL, auth_middleware
from manager.api.console_sessions import console_sessions_ctx
from manager.api.hosts import host_middleware
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
    STREAMS,
    SWEEPER,
    TRANSFERS,
)
from manager.api.problems import problem_middleware
from manager.api.ratelimit import add_headers, ratelimit_ctx, ratelimit_middleware
from manager.api.strict import NONCES, NonceStore
from manager.atlas import api_accounts
from manager.atlas.accounts import atlas_accounts_ctx
from manager.atlas.setup import setup_jobs
from manager.config import ManagerConfig
from manager.db.engine import make_engine
from manager.events import EventBus
from manager.live_stats import LiveStats
from manager.outage import translate
from manager.registry import AgentRegistry
from manager.services.control import SessionControl
from manager.services.files import SessionFiles
from manager.services.keypairs import KeypairStore, seal_plaintext
from manager.services.routes import QueryCounter, RouteCache
from manager.services.sessions import SessionCreator
from manager.services.transfers import TransferGate
from manager.streams import StreamHub
from manager.sweep import Sweeper

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 3.0
T = TypeVar("T")


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


async def _patiently(what: str, attempt: Callable[[], Awaitable[T]], wait: float) -> T:
    """``attempt()``, retried while ``what`` is unreachable, for up to ``wait`` seconds
    (a manager started during an outage waits for it instead of exiting)."""
    loop = asyncio.get_running_loop()
    deadline, said = loop.time() + wait, False
    while True:
        try:
            return await attempt()
        except Exception as e:
            unreachable = translate(e) is not None or isinstance(e, ServiceUnavailable)
            if not unreachable or loop.time() >= deadline:
                raise
            if not said:
                log.warning("%s is unreachable; waiting up to %.0fs for it", what, wait)
                said = True
        await asyncio.sleep(1.0)


async def _db_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    box = secretbox.load(config.secrets.key_file)  # no key: no start (never plaintext)
    warn_if_loose(config.link.secret_key_file, config.link.join_token_file)
    engine = make_engine(config.db.url)

    async def check() -> None:
        async with engine.connect() as conn:
            await conn.execute(sa.text("SELECT secret_key_enc FROM keypairs LIMIT 1"))
    try:
        await _patiently("PostgreSQL", check, config.reconcile.startup_wait)
        await seal_plaintext(engine, box)
    except (SQLAlchemyError, OSError) as e:
        await engine.dispose()
        raise ServiceUnavailable(f"cannot use the database (did you run init-db?): "
                                 f"{type(e).__name__}: {str(e).splitlines()[0]}") from None
    except ConfigError:
        await engine.dispose()
        raise
    app[DB] = engine
    app[KEYPAIRS] = KeypairStore(engine, box)
    yield
    await engine.dispose()


async def _events_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    url = config.redis.url
    if "@" not in url and url.startswith(("redis://", "rediss://")):
        log.warning("redis.url carries no password: anyone who reaches Redis can read "
                    "console sessions and forge rate-limit and nonce state")
    app[EVENTS] = await _patiently("Redis", lambda: EventBus.connect(url),
                                   config.reconcile.startup_wait)
    app[NONCES] = NonceStore(app[EVENTS].client, NONCE_TTL)
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
    registry = AgentRegistry(config.link, app[DB], app[EVENTS], token, routes.forget,
                             config.reconcile)
    LiveStats(registry)
    registry.start(secret, public)
    app[REGISTRY] = registry
    counter = QueryCounter()
    app[COUNTER] = counter
    app[CREATOR] = SessionCreator(config, app[DB], registry, app[EVENTS])
    queue = app[CREATOR].queue
    registry.on_room(queue.kick)
    queue.start()
    app[CONTROL] = SessionControl(config, app[DB], registry, app[EVENTS], routes, counter)
    app[TRANSFERS] = TransferGate(config.transfers)
    app[FILES] = SessionFiles(app[CONTROL], app[TRANSFERS])
    app[SWEEPER] = Sweeper(app[DB], registry)
    app[SWEEPER].start()
    hub = app[STREAMS] = StreamHub(registry, config.link.request_timeout)
    flusher = asyncio.ensure_future(_flush_loop(app))
    follower = asyncio.ensure_future(app[EVENTS].follow(lambda e: _on_event(app, routes, e)))
    yield
    await hub.close()
    await queue.close()
    await app[SWEEPER].close()
    for task in (flusher, follower):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    with contextlib.suppress(Exception):
        await counter.flush(app[DB])
    await registry.close()


def _on_event(app: web.Application, routes: RouteCache, event: dict[str, Any]) -> None:
    """Every replica's lifecycle events: the route cache and the local streams."""
    _forget_route(routes, event)
    app[STREAMS].on_bus_event(event)
    app[CREATOR].queue.on_bus_event(event)


async def _end_streams(app: web.Application) -> None:
    """on_shutdown: open WebSockets end (with a reason) before the server waits on them."""
    if STREAMS in app:
        await app[STREAMS].close()


def _forget_route(routes: RouteCache, event: dict[str, Any]) -> None:
    """A session that left RUNNING on any replica leaves this replica's route cache."""
    if event.get("event") != "kernel-status" or event.get("to") == "RUNNING":
        return
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        routes.forget(uuid.UUID(event.get("kernelId")))


async def _flush_loop(app: web.Application) -> None:
    while True:
        await asyncio.sleep(FLUSH_INTERVAL)
        try:
            await app[COUNTER].flush(app[DB])
        except Exception as e:
            if translate(e) is None:
                log.exception("cannot flush query counters")
            else:  # kept in memory, flushed when the database is back
                app[REGISTRY].db.failed(e)


def build_app(config: ManagerConfig) -> web.Application:
    app = web.Application(middlewares=[
        problem_middleware, ratelimit_middleware, host_middleware, version.version_middleware,
        auth_middleware, method_override_middleware,
    ])
    app.on_response_prepare.append(add_headers)
    app.on_shutdown.append(_end_streams)
    app[CONFIG] = config
    app.cleanup_ctx.extend([_db_ctx, _events_ctx, ratelimit_ctx, _registry_ctx,
                            console_sessions_ctx])
    version.add_routes(app)
    kernel.add_routes(app)
    files.add_routes(app)
    admin.add_routes(app)
    resource.add_routes(app)
    health.add_routes(app)
    nodes.add_routes(app)
    usage.add_routes(app)
    console.add_routes(app)
    vfolders.add_routes(app)
    stream.add_routes(app)
    if config.atlas.token_key_file is not None:  # the generation product is on
        app.cleanup_ctx.append(atlas_accounts_ctx)
        api_accounts.add_routes(app)
        setup_jobs(app)  # after vfolders: the job API stores files through them
    return app
