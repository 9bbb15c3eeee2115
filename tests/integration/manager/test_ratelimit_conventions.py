"""Conventions of seed 004 §2.6–§2.9 on the real app: version header, rate limits,
problem bodies carrying the API version, and bad input on the files endpoints."""
from __future__ import annotations

import io
from typing import Any

import sqlalchemy as sa

from manager.api.keys import EVENTS
from manager.api.ratelimit import KEY_PREFIX, LIMITER
from manager.db.tables import keypair_policies

RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Window")


async def _raw(harness: Any, method: str, path: str, version: str | None,
               body: bytes = b"") -> Any:
    headers = harness.headers(method, path)
    if version is None:
        headers.pop("X-BackendAI-Version")
    else:
        headers["X-BackendAI-Version"] = version
    return await harness.client.request(method, path, data=body, headers=headers)


async def test_version_header_is_checked(harness: Any) -> None:
    for version, status in [(None, 400), ("", 400), ("four", 400), ("v4", 400),
                            ("v5.20190101", 404), ("v3.20170615", 404)]:
        resp = await _raw(harness, "GET", "/kernel/nope", version)
        body = await resp.json(content_type=None)
        assert resp.status == status, (version, body)
        assert resp.content_type == "application/problem+json"
        assert body["version"] == "v4.20181215" and body["status"] == status
        assert all(h in resp.headers for h in RATE_HEADERS), version


async def test_rate_headers_on_every_response(harness: Any) -> None:
    for method, path, signed in [("GET", "/", False), ("GET", "/kernel/x", True),
                                 ("GET", "/no/such/route", True), ("POST", "/kernel/x", False)]:
        headers = harness.headers(method, path) if signed else {}
        resp = await harness.client.request(method, path, headers=headers)
        assert all(h in resp.headers for h in RATE_HEADERS), (method, path, resp.status)
        assert resp.headers["X-RateLimit-Window"] == "900"
    resp = await harness.client.get("/kernel/x", headers=harness.headers("GET", "/kernel/x"))
    assert resp.headers["X-RateLimit-Limit"] == "30000"


async def test_keypair_limit_gives_429(harness: Any) -> None:
    keys = await harness.keypair()
    async with harness.engine.begin() as conn:
        await conn.execute(sa.insert(keypair_policies).values(access_key=keys[0], rate_limit=3))
    seen = []
    for _ in range(5):
        resp = await harness.client.get("/kernel/x", headers=harness.headers(
            "GET", "/kernel/x", keys))
        seen.append((resp.status, resp.headers["X-RateLimit-Remaining"]))
        body = await resp.json(content_type=None)
    assert seen == [(404, "2"), (404, "1"), (404, "0"), (429, "0"), (429, "0")]
    assert body["type"].endswith("too-many-requests") and body["version"] == "v4.20181215"
    other = await harness.client.get("/kernel/x", headers=harness.headers("GET", "/kernel/x"))
    assert other.status == 404  # another keypair has its own window


async def test_anonymous_limit_per_ip(harness: Any) -> None:
    await harness.app[EVENTS].client.delete(KEY_PREFIX + "ip:127.0.0.1")
    harness.app[LIMITER].anonymous = 2
    statuses = [(await harness.client.post("/kernel/create", data=b"{}")).status
                for _ in range(4)]
    assert statuses == [401, 401, 429, 429]
    ok = await harness.client.get("/kernel/x", headers=harness.headers("GET", "/kernel/x"))
    assert ok.status == 404  # signed calls count by access key, not by IP
    await harness.app[EVENTS].client.delete(KEY_PREFIX + "ip:127.0.0.1")


async def test_files_endpoints_reject_bad_input(harness: Any) -> None:
    await harness.agent()
    assert (await harness.create("files-1"))[0] == 201
    other = await harness.keypair()
    cases: list[tuple[str, str, Any, int]] = [
        ("GET", "/kernel/files-1/files", {"path": 7}, 400),
        ("GET", "/kernel/files-1/download", {}, 400),
        ("GET", "/kernel/files-1/download", {"files": "a"}, 400),
        ("GET", "/kernel/files-1/download", {"files": [1]}, 400),
        ("GET", "/kernel/files-1/download", {"files": []}, 400),
        ("GET", "/kernel/files-1/download", {"files": ["a"] * 6}, 400),
        ("GET", "/kernel/nope/files", {"path": "."}, 404),
        ("GET", "/kernel/nope/logs", None, 404),
        ("GET", "/kernel/nope/download", {"files": ["a"]}, 404),
    ]
    for method, path, body, status in cases:
        code, answer = await harness.call(method, path, body)
        assert code == status and answer["version"] == "v4.20181215", (path, body, answer)
    for path in ("/kernel/files-1/files", "/kernel/files-1/logs"):
        code, answer = await harness.call("GET", path, {}, keys=other)
        assert code == 404, answer  # another user's session does not exist for them
    code, answer = await harness.call("POST", "/kernel/files-1/upload", {"src": "x"})
    assert code == 400 and "multipart" in answer["detail"]


async def _upload(harness: Any, parts: list[tuple[str, bytes]], ident: str = "files-2",
                  keys: Any = None) -> tuple[int, Any]:
    import aiohttp

    form = aiohttp.FormData()
    for name, data in parts:
        form.add_field("src", io.BytesIO(data), filename=name, content_type="application/octet-stream")
    payload = form()
    path = f"/kernel/{ident}/upload"
    headers = harness.headers("POST", path, keys, content_type="multipart/form-data")
    headers["Content-Type"] = payload.content_type  # signed without the boundary
    resp = await harness.client.post(path, data=payload, headers=headers)
    return resp.status, await resp.json(content_type=None)


async def test_upload_limits_answer_problems(harness: Any) -> None:
    fake = await harness.agent()
    assert (await harness.create("files-2"))[0] == 201
    status, body = await _upload(harness, [("a.txt", b"x" * ((1 << 20) + 1))])
    assert status == 413 and body["type"].endswith("payload-too-large")
    status, body = await _upload(harness, [(f"f{i}", b"x") for i in range(21)])
    assert status == 400 and "20 files" in body["detail"]
    status, body = await _upload(harness, [("a.txt", b"x")], ident="nope")
    assert status == 404
    other = await harness.keypair()
    status, body = await _upload(harness, [("a.txt", b"x")], keys=other)
    assert status == 404
    assert not [m for m in fake.created[1:]]  # nothing else reached the agent
