"""``POST /admin/graphql`` (any accepted ``/vN`` prefix): the admin GraphQL endpoint.

Authenticated like every other route (HMAC signature, or the console's session
cookie + CSRF header — see ``manager.api.console``); the GraphQL side is in
``manager.graphql``.
"""
from __future__ import annotations

import orjson
from aiohttp import web

from common.errors import MalformedJSON
from manager.api.auth import caller
from manager.api.keys import CONFIG, CREATOR, DB, KEYPAIRS
from manager.api.problems import read_json_object
from manager.api.version import PREFIXES
from manager.graphql.context import GqlContext
from manager.graphql.execute import GqlRequest, GqlResult, bad_request, run

STANDARD_TYPE = "application/graphql-response+json"


async def _result(request: web.Request) -> GqlResult:
    try:
        body = await read_json_object(request)
    except MalformedJSON as e:
        return bad_request(e.detail or e.title)
    parsed = GqlRequest.from_json(body)
    if isinstance(parsed, str):
        return bad_request(parsed)
    context = GqlContext.create(request.app[DB], caller(request), request.app[KEYPAIRS].box,
                                request.app[CREATOR].queue)
    return await run(parsed, context, request.app[CONFIG].graphql)


async def graphql(request: web.Request) -> web.Response:
    standard = STANDARD_TYPE in request.headers.get("Accept", "")
    status, body = (await _result(request)).body(standard)
    return web.Response(body=orjson.dumps(body), status=status,
                        content_type=STANDARD_TYPE if standard else "application/json",
                        headers={"Cache-Control": "no-store"})


def add_routes(app: web.Application) -> None:
    for prefix in PREFIXES:
        app.router.add_post(f"{prefix}/admin/graphql", graphql)
