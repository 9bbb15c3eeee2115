"""``/kernel`` handlers (seed 004 §2.11, §2.13): thin — parse, call a service, reply."""
from __future__ import annotations

import orjson
from aiohttp import web

from manager.api.auth import caller
from manager.api.keys import CONTROL, CREATOR
from manager.api.problems import json_response, read_json_object
from manager.api.schemas import parse_complete, parse_create, parse_execute
from manager.api.version import PREFIXES


async def create(request: web.Request) -> web.Response:
    spec = parse_create(await read_json_object(request))
    kernel_id, created, status = await request.app[CREATOR].create(caller(request), spec)
    body: dict[str, object] = {"kernelId": kernel_id, "created": created}
    if status == "PENDING":
        body["status"] = status  # enqueueOnly: placed later (docs/api.md)
    return json_response(body, status=201 if created else 200)


async def get_info(request: web.Request) -> web.Response:
    info = await request.app[CONTROL].info(caller(request), request.match_info["id"])
    return json_response(info)


async def destroy(request: web.Request) -> web.Response:
    stats = await request.app[CONTROL].destroy(caller(request), request.match_info["id"])
    return json_response({"stats": stats})


async def restart(request: web.Request) -> web.Response:
    await request.app[CONTROL].restart(caller(request), request.match_info["id"])
    return web.Response(status=204)


async def execute(request: web.Request) -> web.Response:
    spec = parse_execute(await read_json_object(request))
    result = await request.app[CONTROL].execute(caller(request), request.match_info["id"], spec)
    return web.Response(body=orjson.dumps({"result": result}),
                        content_type="application/json")


async def interrupt(request: web.Request) -> web.Response:
    await request.app[CONTROL].interrupt(caller(request), request.match_info["id"])
    return web.Response(status=204)


async def complete(request: web.Request) -> web.Response:
    code, options = parse_complete(await read_json_object(request))
    items = await request.app[CONTROL].complete(
        caller(request), request.match_info["id"], code, options)
    return json_response({"result": items})


def add_routes(app: web.Application) -> None:
    for prefix in PREFIXES:
        r = app.router
        r.add_post(f"{prefix}/kernel/create", create)
        r.add_post(f"{prefix}/kernel", create)
        r.add_get(f"{prefix}/kernel/{{id}}", get_info)
        r.add_delete(f"{prefix}/kernel/{{id}}", destroy)
        r.add_patch(f"{prefix}/kernel/{{id}}", restart)
        r.add_post(f"{prefix}/kernel/{{id}}", execute)
        r.add_post(f"{prefix}/kernel/{{id}}/interrupt", interrupt)
        r.add_post(f"{prefix}/kernel/{{id}}/complete", complete)
