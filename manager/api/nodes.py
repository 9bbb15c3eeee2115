"""Admin node views (seed 002; docs/admin.md): ``GET /admin/nodes`` lists the agents,
``POST /admin/choose-host`` answers which agent a create with this body would go to
now and why each other agent would not (a dry run: nothing is reserved)."""
from __future__ import annotations

from aiohttp import web

from manager.api.auth import admin_caller
from manager.api.keys import CONFIG, DB, REGISTRY
from manager.api.problems import json_response, read_json_object
from manager.api.schemas import parse_create
from manager.api.version import PREFIXES
from manager.services.nodes import choose_host, list_nodes

DRY_RUN_TOKEN = "choose-host"  # a create body needs a token; a dry run does not


async def nodes(request: web.Request) -> web.Response:
    admin_caller(request)
    return json_response({"nodes": await list_nodes(request.app[DB], request.app[REGISTRY])})


async def choose(request: web.Request) -> web.Response:
    admin_caller(request)
    body = await read_json_object(request)
    body.setdefault("clientSessionToken", DRY_RUN_TOKEN)
    spec = parse_create(body)
    return json_response(await choose_host(request.app[DB], request.app[REGISTRY],
                                           request.app[CONFIG], spec))


def add_routes(app: web.Application) -> None:
    for prefix in PREFIXES:
        app.router.add_get(f"{prefix}/admin/nodes", nodes)
        app.router.add_post(f"{prefix}/admin/choose-host", choose)
