"""Which paths belong to the generation product: they authenticate themselves
(Bearer token or v4 HMAC, manager.atlas.identity), not in the HMAC middleware."""
from __future__ import annotations

from aiohttp import web

PREFIXES = ("/atlas/", "/krako/")
EXACT = frozenset({"/atlas", "/krako", "/ws", "/history", "/interrupt"})


def is_atlas_route(request: web.Request) -> bool:
    path = request.path
    return path in EXACT or path.startswith(PREFIXES)
