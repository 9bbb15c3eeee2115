"""Attacks on the signed API, each performed for real against the app (issue 7, medium):
a signature made for another Host, a replayed strict request (on the same and on a
second replica), a body swapped under a valid strict signature, a v4 request from a
keypair that requires strict signing."""
from __future__ import annotations

import hashlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from manager.api.app import build_app
from manager.config import ManagerConfig
from tests.integration.manager.conftest import Harness, _truncate, make_manager_config
from tests.integration.manager.signing import signed_headers

GQL = "/admin/graphql"
QUERY = orjson.dumps({"query": "{ keypair { access_key } }"})
LB_HOST = "api.kraken.test"  # the name both replicas serve behind a load balancer


async def _send(client: TestClient[Any, Any], headers: dict[str, str], body: bytes,
                path: str = GQL, method: str = "POST") -> tuple[int, Any]:
    resp = await client.request(method, path, data=body, headers=headers)
    raw = await resp.read()
    return resp.status, (orjson.loads(raw) if raw else None)


def _host(h: Harness) -> str:
    return f"{h.client.host}:{h.client.port}"


async def test_signature_for_another_host_is_refused_before_auth(harness: Harness) -> None:
    h = harness
    good = signed_headers(h.access_key, h.secret_key, "POST", GQL, _host(h))
    assert (await _send(h.client, good, QUERY))[0] == 200
    # a perfectly valid signature, made for a host this manager does not serve
    evil = signed_headers(h.access_key, h.secret_key, "POST", GQL, "evil.example:8081")
    status, problem = await _send(h.client, evil, QUERY)
    assert status == 400 and problem["type"].endswith("/host-not-allowed")
    # the same refusal for an unknown access key: no keypair lookup, no timing signal
    status, problem = await _send(h.client, {**evil, "Authorization": evil[
        "Authorization"].replace(h.access_key, "AKIANOSUCHKEY")}, QUERY)
    assert status == 400 and problem["type"].endswith("/host-not-allowed")
    resp = await h.client.get("/", headers={"Host": "rebind.attacker.example"})
    assert resp.status == 400  # DNS rebinding onto the console or the API
    resp = await h.client.get("/", headers={"Host": f"localhost:{h.client.port}"})
    assert resp.status == 200


@pytest.fixture
async def replicas(mgr_db_url: str, tmp_path: Path) -> AsyncIterator[list[Harness]]:
    """Two manager replicas on one database and one Redis, both serving LB_HOST."""
    config = make_manager_config(mgr_db_url, tmp_path, api={"allowed_hosts": [LB_HOST]})
    await _truncate(config.db.url)
    out: list[Harness] = []
    clients = [TestClient(TestServer(build_app(config))) for _ in range(2)]
    try:
        for client in clients:
            await client.start_server()
            out.append(Harness(client, (b"", b""), ""))
        out[0].access_key, out[0].secret_key = await out[0].keypair()
        yield out
    finally:
        for client in clients:
            await client.close()


async def test_strict_request_cannot_be_replayed_on_any_replica(
        replicas: list[Harness]) -> None:
    first, second = replicas
    keys = (first.access_key, first.secret_key)
    headers = signed_headers(*keys, "POST", GQL, LB_HOST, body=QUERY, strict=True)
    status, data = await _send(first.client, headers, QUERY)
    assert status == 200 and data["keypair"]["access_key"] == first.access_key
    for replica in (first, second):
        status, problem = await _send(replica.client, headers, QUERY)
        assert status == 401 and problem["type"].endswith("/replayed-request")
    # a fresh nonce is fine on either replica
    fresh = signed_headers(*keys, "POST", GQL, LB_HOST, body=QUERY, strict=True)
    assert (await _send(second.client, fresh, QUERY))[0] == 200


async def test_v4_requests_replay_but_strict_mode_is_opt_in(replicas: list[Harness]) -> None:
    """The documented residual risk of v4, and that strict mode is what closes it."""
    first, second = replicas
    headers = signed_headers(first.access_key, first.secret_key, "POST", GQL, LB_HOST)
    assert (await _send(first.client, headers, QUERY))[0] == 200
    assert (await _send(second.client, headers, QUERY))[0] == 200


async def test_body_swapped_under_a_strict_signature_is_refused(harness: Harness) -> None:
    h = harness
    await h.agent()
    signed_body = orjson.dumps({"lang": "python", "clientSessionToken": "meant"})
    sent_body = orjson.dumps({"lang": "python", "clientSessionToken": "swapped"})
    headers = signed_headers(h.access_key, h.secret_key, "POST", "/kernel/create", _host(h),
                             body=signed_body, strict=True)
    status, problem = await _send(h.client, headers, sent_body, "/kernel/create")
    assert status == 401 and problem["type"].endswith("/body-digest-mismatch")
    assert await h.sessions() == []  # the handler never ran
    # the header digest itself cannot be swapped: it is part of the signature
    forged = {**headers, "X-Kraken-Content-SHA256": hashlib.sha256(
        sent_body).hexdigest(), "X-Kraken-Nonce": secrets.token_urlsafe(16)}
    status, problem = await _send(h.client, forged, sent_body, "/kernel/create")
    assert status == 401 and "signature" in problem["detail"]
    assert await h.sessions() == []
    ok = signed_headers(h.access_key, h.secret_key, "POST", "/kernel/create", _host(h),
                        body=signed_body, strict=True)
    assert (await _send(h.client, ok, signed_body, "/kernel/create"))[0] == 201
    assert [r.session_name for r in await h.sessions()] == ["meant"]


async def test_keypair_requiring_strict_signing_refuses_v4(harness: Harness) -> None:
    h = harness
    strict_keys = await h.keypair(strict_signing=True)
    v4 = signed_headers(*strict_keys, "POST", GQL, _host(h))
    status, problem = await _send(h.client, v4, QUERY)
    assert status == 401 and problem["type"].endswith("/strict-signing-required")
    assert "X-Kraken-Nonce" in problem["detail"]
    strict = signed_headers(*strict_keys, "POST", GQL, _host(h), body=QUERY, strict=True)
    status, data = await _send(h.client, strict, QUERY)
    assert status == 200 and data["keypair"]["access_key"] == strict_keys[0]
    # a bad secret still learns nothing about the keypair's mode
    wrong = signed_headers(strict_keys[0], "not-the-secret", "POST", GQL, _host(h))
    status, problem = await _send(h.client, wrong, QUERY)
    assert status == 401 and problem["type"].endswith("/unauthorized")


async def test_strict_headers_must_be_well_formed(harness: Harness) -> None:
    h = harness
    headers = signed_headers(h.access_key, h.secret_key, "POST", GQL, _host(h), body=QUERY,
                             strict=True, nonce="short")
    status, problem = await _send(h.client, headers, QUERY)
    assert status == 401 and "X-Kraken-Nonce" in problem["detail"]
    headers = signed_headers(h.access_key, h.secret_key, "POST", GQL, _host(h), body=QUERY,
                             strict=True)
    del headers["X-Kraken-Content-SHA256"]
    status, problem = await _send(h.client, headers, QUERY)
    assert status == 401 and "X-Kraken-Content-SHA256" in problem["detail"]


async def test_strict_body_limit_is_enforced_while_reading(mgr_db_url: str,
                                                           tmp_path: Path) -> None:
    config: ManagerConfig = make_manager_config(mgr_db_url, tmp_path,
                                                api={"strict_max_body": "1k"})
    async with TestClient(TestServer(build_app(config))) as client:
        h = Harness(client, (b"", b""), "")
        keys = await h.keypair()
        body = b"{" + b" " * 4096 + b"}"
        headers = signed_headers(*keys, "POST", GQL, _host(h), body=body, strict=True)
        status, problem = await _send(client, headers, body)
        assert status == 413 and "strict_max_body" in problem["detail"]


async def test_graphql_keypair_mutations_set_strict_signing(harness: Harness) -> None:
    h = harness
    admin = await h.keypair(is_admin=True)
    made = await h.call("POST", GQL, {"query": """mutation {
      create_keypair(user_id: "strict@x", props: {strict_signing: true}) {
        ok keypair { access_key secret_key strict_signing } } }"""}, admin)
    kp = made[1]["create_keypair"]["keypair"]
    assert kp["strict_signing"] is True and kp["secret_key"]
    v4 = signed_headers(kp["access_key"], kp["secret_key"], "POST", GQL, _host(h))
    assert (await _send(h.client, v4, QUERY))[0] == 401
    status, data = await h.call("POST", GQL, {"query": f"""mutation {{
      modify_keypair(access_key: "{kp['access_key']}", props: {{strict_signing: false}})
      {{ ok }} }}"""}, admin)
    assert status == 200 and data["modify_keypair"]["ok"] is True
    status, data = await h.call("POST", GQL, {"query": f"""{{
      keypair(access_key: "{kp['access_key']}") {{ strict_signing secret_key }} }}"""}, admin)
    # the secret is shown once, at creation; queries never read it back
    assert data["keypair"] == {"strict_signing": False, "secret_key": None}
