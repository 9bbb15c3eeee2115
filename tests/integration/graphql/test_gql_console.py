"""The console: sign-in, session cookie + CSRF on the GraphQL endpoint, logout."""
from __future__ import annotations

from typing import Any

from aiohttp import ClientResponse

from tests.integration.manager.conftest import Harness

STD = "application/graphql-response+json"
QUERY = {"query": "{ compute_sessions { sess_id } keypair { access_key } }"}


async def _login(h: Harness, access: str, secret: str) -> ClientResponse:
    return await h.client.post("/console/login",
                               json={"access_key": access, "secret_key": secret})


async def _gql(h: Harness, csrf: str | None, body: Any = QUERY, **headers: str
               ) -> ClientResponse:
    hdrs = {"Accept": STD, **headers}
    if csrf is not None:
        hdrs["X-Kraken-CSRF"] = csrf
    return await h.client.post("/admin/graphql", json=body, headers=hdrs)


async def test_gql_console_page_and_assets(harness: Harness) -> None:
    page = await harness.client.get("/console")
    assert page.status == 200 and "graphiql.min.js" in await page.text()
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    for asset in ("graphiql/graphiql.min.js", "graphiql/react.production.min.js",
                  "graphiql/graphiql.min.css", "console/console.js"):
        resp = await harness.client.get(f"/console/static/{asset}")
        assert resp.status == 200, asset
    assert (await harness.client.get("/console/static/../api/auth.py")).status == 404


async def test_gql_console_login_session_csrf_logout(harness: Harness) -> None:
    h = harness
    admin = await h.keypair(is_admin=True)
    bad = await _login(h, admin[0], admin[1] + "x")
    assert bad.status == 401 and "kraken_console" not in bad.cookies
    resp = await _login(h, *admin)
    assert resp.status == 200
    info = await resp.json()
    assert info["is_admin"] is True and "secret" not in str(info)
    cookie = resp.cookies["kraken_console"]
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    assert resp.cookies["kraken_csrf"].value == info["csrf_token"]
    csrf = info["csrf_token"]
    ok = await _gql(h, csrf)
    assert ok.status == 200 and ok.content_type == STD
    assert (await ok.json())["data"]["keypair"]["access_key"] == admin[0]
    assert (await _gql(h, None)).status == 401
    assert (await _gql(h, "wrong")).status == 401
    assert (await _gql(h, csrf, Origin="http://evil.example")).status == 403
    # the cookie opens nothing but the GraphQL endpoint
    assert (await h.client.get("/kernel/whatever")).status == 401
    who = await h.client.get("/console/session")
    assert who.status == 200 and 0 < (await who.json())["expires_in"] <= 1800
    out = await h.client.post("/console/logout", headers={"X-Kraken-CSRF": csrf})
    assert out.status == 204
    h.client.session.cookie_jar.update_cookies({"kraken_console": cookie.value})
    assert (await _gql(h, csrf)).status == 401


async def test_gql_console_plain_keypair_no_introspection(harness: Harness) -> None:
    h = harness
    resp = await _login(h, h.access_key, h.secret_key)
    csrf = (await resp.json())["csrf_token"]
    denied = await _gql(h, csrf, {"query": "{ __schema { types { name } } }"})
    body = await denied.json()
    assert denied.status == 400
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert (await _gql(h, csrf)).status == 200


async def test_gql_console_session_expires(harness: Harness) -> None:
    h = harness
    from manager.api.console_sessions import CONSOLE_SESSIONS
    resp = await _login(h, h.access_key, h.secret_key)
    csrf = (await resp.json())["csrf_token"]
    token = resp.cookies["kraken_console"].value
    await h.app[CONSOLE_SESSIONS].delete(token)  # what the Redis TTL does at expiry
    assert (await _gql(h, csrf)).status == 401
