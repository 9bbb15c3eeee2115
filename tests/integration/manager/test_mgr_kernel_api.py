"""The REST API end to end against PostgreSQL, Redis and a fake agent on the real link."""
from __future__ import annotations

import asyncio
import os
from typing import Any

import orjson
import redis.asyncio as aioredis
import sqlalchemy as sa

from manager.db.tables import kernel_events, keypairs

REDIS_URL = os.environ.get("KRAKEN_TEST_REDIS_URL", "redis://127.0.0.1:16379/0")


async def test_version_needs_no_auth(harness: Any) -> None:
    for path in ("/", "/v4"):
        resp = await harness.client.get(path)
        assert resp.status == 200
        assert await resp.json() == {"version": "v4.20181215"}
    resp = await harness.client.get("/v3/kernel/x")
    body = await resp.json(content_type=None)
    assert resp.status == 404 and body["type"].endswith("unsupported-api-version")


async def test_create_execute_info_destroy(harness: Any) -> None:
    agent = await harness.agent()
    redis = aioredis.Redis.from_url(REDIS_URL)
    pubsub = redis.pubsub()
    await pubsub.subscribe("kraken.events")
    try:
        status, body = await harness.create("sess-1", instanceMemory=0.25, instanceCores=1)
        assert (status, body) == (201, {"kernelId": "sess-1", "created": True})
        assert agent.created[0].slots == {"cpu": "1", "mem": str(2**28)}
        status, body = await harness.call("POST", "/v4/kernel/sess-1",
                                          {"mode": "query", "code": "print(1)"})
        assert status == 200
        result = body["result"]
        assert result["status"] == "finished" and result["console"] == [["stdout", "ran print(1)\n"]]
        assert result["runId"] and result["exitCode"] == 0
        status, info = await harness.call("GET", "/kernel/sess-1")
        assert status == 200
        assert info["lang"] == "python" and info["status"] == "RUNNING"
        assert info["numQueriesExecuted"] == 1 and info["memoryLimit"] == 2**28 // 1024
        assert info["cpuCreditUsed"] == 1234
        status, body = await harness.call("POST", "/kernel/sess-1/complete", {"code": "pr"})
        assert (status, body) == (200, {"result": ["print"]})
        assert (await harness.call("POST", "/kernel/sess-1/interrupt"))[0] == 204
        assert (await harness.call("PATCH", "/kernel/sess-1"))[0] == 204
        status, body = await harness.call("DELETE", "/kernel/sess-1")
        assert status == 200 and body["stats"]["cpu_used"] == 1234
        assert len(agent.destroyed) == 1
        (row,) = await harness.sessions()
        assert row.status == "TERMINATED" and row.status_info == "user-requested"
        async with harness.engine.connect() as conn:
            events = (await conn.execute(sa.select(kernel_events.c.to_status).order_by(
                kernel_events.c.id))).scalars().all()
        assert events == ["PENDING", "SCHEDULED", "PREPARING", "RUNNING", "RESTARTING",
                          "RUNNING", "TERMINATING", "TERMINATED"]
        seen = []
        for _ in range(200):
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.05)
            event = orjson.loads(msg["data"]) if msg is not None else {}
            if event.get("accessKey") == harness.access_key:  # Redis is shared
                seen.append(event["to"])
            if len(seen) == len(events):
                break
        assert seen == events
        assert seen[:4] == ["PENDING", "SCHEDULED", "PREPARING", "RUNNING"]
        assert (await harness.call("GET", "/kernel/sess-1"))[0] == 404
    finally:
        await pubsub.aclose()
        await redis.aclose()


async def test_query_counts_are_flushed_in_batches(harness: Any) -> None:
    await harness.agent()
    assert (await harness.create("count-me"))[0] == 201
    for _ in range(3):
        assert (await harness.call("POST", "/kernel/count-me", {"code": "1"}))[0] == 200
    from manager.api.keys import COUNTER
    await harness.app[COUNTER].flush(harness.engine)
    (row,) = await harness.sessions()
    assert row.num_queries == 3
    async with harness.engine.connect() as conn:
        kp = (await conn.execute(sa.select(keypairs).where(
            keypairs.c.access_key == harness.access_key))).one()
    assert kp.num_queries == 3 and kp.last_used is not None


async def test_auth_failures_are_401(harness: Any) -> None:
    resp = await harness.client.post("/kernel/create", data=b"{}")
    assert resp.status == 401
    assert resp.content_type == "application/problem+json"
    headers = harness.headers("GET", "/kernel/x")
    headers["Authorization"] = headers["Authorization"][:-4] + "0000"
    assert (await harness.client.get("/kernel/x", headers=headers)).status == 401
    unknown = ("AKIAUNKNOWN000", "secret-secret")
    assert (await harness.call("GET", "/kernel/x", keys=unknown))[0] == 401
    inactive = await harness.keypair()
    async with harness.engine.begin() as conn:
        await conn.execute(sa.update(keypairs).where(
            keypairs.c.access_key == inactive[0]).values(is_active=False))
    status, body = await harness.call("GET", "/kernel/x", keys=inactive)
    assert status == 401 and "inactive" in body["detail"]


async def test_bad_requests(harness: Any) -> None:
    await harness.agent()
    assert (await harness.call("GET", "/kernel/nope"))[0] == 404
    status, body = await harness.create("sess-x", lang="cobol")
    assert status == 404 and body["type"].endswith("image-not-found")
    headers = harness.headers("POST", "/kernel/create")
    resp = await harness.client.post("/kernel/create", data=b"{not json", headers=headers)
    body = await resp.json(content_type=None)
    assert resp.status == 400 and body["type"].endswith("malformed-json")
    status, body = await harness.create("sess-y", clusterSize=2)
    assert status == 400 and "clusterSize" in body["detail"]
    status, body = await harness.create("sess-z", instanceCores=64)
    assert status == 406
    assert await harness.sessions() == []


async def test_token_reuse_and_lang_conflict(harness: Any) -> None:
    agent = await harness.agent(images=["kraken/python:latest", "kraken/r:latest"])
    assert (await harness.create("same"))[0] == 201
    assert await harness.create("same") == (200, {"kernelId": "same", "created": False})
    status, body = await harness.create("same", lang="r")
    assert status == 409 and body["type"].endswith("session-already-exists")
    assert len(agent.created) == 1


async def test_concurrency_limit_under_parallel_creates(harness: Any) -> None:
    await harness.agent(cpu="64", mem=str(64 * 2**30))
    results = await asyncio.gather(*(harness.create(f"par-{i}") for i in range(8)))
    statuses = sorted(s for s, _ in results)
    assert statuses == [201] * 5 + [412] * 3
    live = [r for r in await harness.sessions() if r.status == "RUNNING"]
    assert len(live) == 5


async def test_no_room_queues_then_times_out_cancelled(harness: Any) -> None:
    await harness.agent(cpu="1", mem=str(2**30))
    assert (await harness.create("first", instanceCores=1, instanceMemory=1))[0] == 201
    status, body = await harness.call("POST", "/kernel/create", {
        "lang": "python", "clientSessionToken": "second", "maxWaitSeconds": 0.3,
        "config": {"instanceCores": 1, "instanceMemory": 1}})
    assert status == 503 and body["type"].endswith("session-queue-timeout"), body
    rows = {r.session_name: r for r in await harness.sessions()}
    assert rows["second"].status == "CANCELLED"
    assert rows["second"].status_info == "session-queue-timeout"


async def test_failed_agent_create_leaves_error_row(harness: Any) -> None:
    agent = await harness.agent()
    agent.fail_create = "image is broken"
    status, body = await harness.create("broken")
    assert status == 500 and body["type"].endswith("kernel-creation-failed")
    (row,) = await harness.sessions()
    assert row.status == "ERROR" and "image is broken" in row.status_info
    assert agent.destroyed == [str(row.id)]
    agent.fail_create = None
    assert (await harness.create("broken"))[0] == 201


async def test_other_users_kernel_is_404(harness: Any) -> None:
    await harness.agent()
    assert (await harness.create("mine"))[0] == 201
    other = await harness.keypair()
    for method in ("GET", "DELETE", "PATCH"):
        assert (await harness.call(method, "/kernel/mine", keys=other))[0] == 404
    status, _ = await harness.call("POST", "/kernel/mine", {"code": "1"}, keys=other)
    assert status == 404
    (row,) = await harness.sessions()
    assert (await harness.call("GET", f"/kernel/{row.id}", keys=other))[0] == 404
    admin = await harness.keypair(is_admin=True)
    status, info = await harness.call("GET", f"/kernel/{row.id}", keys=admin)
    assert status == 200 and info["status"] == "RUNNING"


async def test_method_override(harness: Any) -> None:
    await harness.agent()
    assert (await harness.create("over"))[0] == 201
    headers = harness.headers("POST", "/kernel/over")
    headers["X-Method-Override"] = "GET"
    resp = await harness.client.post("/kernel/over", headers=headers)
    assert resp.status == 200 and (await resp.json())["status"] == "RUNNING"
