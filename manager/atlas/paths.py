"""The URL prefixes of the generation product (seed 000 spells ``/atlas``, its tutorial
``/krako``): every atlas route is served under both, and these routes authenticate
themselves (a Bearer token, or an HMAC signature checked by the manager's middleware)."""
from __future__ import annotations

PREFIXES = ("/atlas", "/krako")
ROOT_PATHS = frozenset({"/ws", "/history", "/interrupt"})  # seed 001 serves these at the root


def is_atlas_path(path: str) -> bool:
    return path in ROOT_PATHS or any(path == p or path.startswith(p + "/") for p in PREFIXES)
