from __future__ import annotations

import uuid

from manager.services.routes import Route, RouteCache


def test_forget_drops_every_alias_of_one_kernel_only() -> None:
    cache = RouteCache(ttl=60)
    a, b = uuid.uuid4(), uuid.uuid4()
    cache.put("AK1", "token-a", Route(a, "agent", "AK1"))
    cache.put("AK1", str(a), Route(a, "agent", "AK1"))
    cache.put("ADMIN", "token-a", Route(a, "agent", "AK1"))
    cache.put("AK1", "token-b", Route(b, "agent", "AK1"))
    cache.forget(a)
    assert cache.get("AK1", "token-a") is None
    assert cache.get("AK1", str(a)) is None
    assert cache.get("ADMIN", "token-a") is None
    assert cache.get("AK1", "token-b") == Route(b, "agent", "AK1")


def test_expired_routes_are_not_served() -> None:
    cache = RouteCache(ttl=-1)
    k = uuid.uuid4()
    cache.put("AK1", "t", Route(k, "agent", "AK1"))
    assert cache.get("AK1", "t") is None
    cache.forget(k)  # nothing left to drop, and no error
