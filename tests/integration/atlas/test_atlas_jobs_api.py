"""The job API against real PostgreSQL, Redis and the app: uploads refused before
anything is stored, a job created into the account's `atlas` folder, owner checks,
cursor paging, deletion, history."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from manager.db.tables import atlas_jobs
from tests.integration.atlas.conftest import FakeAgent, Harness, job_rows, make_account

pytestmark = pytest.mark.integration


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) \
        if root.exists() else []


async def test_models_list_installed_and_known(harness: Harness, model_agent: FakeAgent
                                               ) -> None:
    acc = await make_account(harness)
    status, body = await acc.call("GET", "/atlas/models")
    assert status == 200
    installed = {m["name"]: m["installed"] for m in body["models"]}
    assert installed == {"nerf2mesh": True, "gaussian-splatting": True, "decal": False,
                         "MusePose": False, "InstantMesh": False}
    status, body = await acc.call("GET", "/krako/models")
    assert status == 200 and len(body["models"]) == 5


@pytest.mark.parametrize("case", ["random", "long", "large", "field", "missing-name",
                                  "missing-video", "epoch", "twice", "short", "uninstalled"])
async def test_bad_uploads_leave_nothing(harness: Harness, model_agent: FakeAgent,
                                         videos: dict[str, bytes], vf_root: Path,
                                         upload_dir: Path, case: str) -> None:
    acc = await make_account(harness)
    ok = {"itemName": "cup", "Epoch": "3", "payLoad": videos["ok"]}
    model, fields = "gs3d", dict(ok)
    if case == "random":
        fields["payLoad"] = videos["random"]
    elif case == "long":
        fields["payLoad"] = videos["long"]  # 5 s; the test config allows 3
    elif case == "large":
        fields["payLoad"] = videos["random"] * 20  # 80 KB; the test config allows 64 KiB
    elif case == "field":
        fields = {"itemName": "cup", "Epoch": "3", "video": videos["ok"]}
    elif case == "missing-name":
        del fields["itemName"]
    elif case == "missing-video":
        del fields["payLoad"]
    elif case == "epoch":
        fields["Epoch"] = "500"
    elif case == "twice":
        fields = {**fields, "epoch": "4"}  # Epoch and epoch: one field given twice
    elif case == "short":
        model = "nerf2mesh"  # 20 s minimum, HD minimum
    elif case == "uninstalled":
        model = "instant-mesh"
    status, body = await acc.upload(model, fields)
    assert status == 400, body
    assert body["message"] == "Invalid request syntax"
    assert body["detail"]
    if case == "uninstalled":
        assert body["type"].endswith("/model-not-installed")
    assert await job_rows(harness) == []
    assert _files(vf_root) == []
    assert _files(upload_dir) == []


async def test_create_detail_owner_checks_delete(harness: Harness, model_agent: FakeAgent,
                                                 videos: dict[str, bytes], vf_root: Path,
                                                 upload_dir: Path) -> None:
    alice, bob = await make_account(harness, "alice"), await make_account(harness, "bob")
    status, body = await alice.upload("gs3d", {"itemName": "my cup", "Epoch": "3",
                                               "payLoad": videos["ok"], "clientId": "c1"})
    assert status == 201, body
    job = body["requestId"]
    assert body["jobId"] == job and body["queueSize"] == "0" and body["trainingTimePerJob"]
    files = _files(vf_root)
    assert any(f.endswith(f"jobs/{job}/input/input.mp4") for f in files)
    assert any(f.endswith(f"jobs/{job}/request.json") for f in files)
    assert _files(upload_dir) == []
    # the tutorial's create route, another spelling of the video field
    status, second = await alice.upload("nerf2mesh", {"itemName": "x", "epoch": "2",
                                                      "Payload": videos["ok"]},
                                        path="/krako/model/gs3d/create")
    assert status == 201 and second["queueSize"] == "1"

    for path in (f"/atlas/item/detail/{job}", f"/atlas/item/detail/my/{job}",
                 f"/krako/item/my-item/{job}"):
        status, detail = await alice.call("GET", path)
        assert status == 200, detail
        assert detail["Status"] == detail["status"] == "PROGRESS"
        assert (detail["modelId"], detail["modelName"]) == ("2", "gaussian-splatting")
        assert detail["uploaderId"] == str(alice.id)
        assert detail["uploaderNickname"] == "alice" and detail["itemName"] == "my cup"
        status, problem = await bob.call("GET", path)
        assert status == 404 and problem["message"]
    status, _ = await alice.call("GET", f"/atlas/item/detail/{uuid.uuid4()}")
    assert status == 404
    status, _ = await alice.call("GET", "/atlas/item/detail/not-a-uuid")
    assert status == 404
    status, problem = await alice.call("GET", f"/atlas/item/download/{job}")
    assert status == 404  # not finished yet
    status, problem = await bob.call("DELETE", f"/atlas/item/{job}")
    assert status == 403 and problem["message"]
    status, problem = await bob.call("POST", f"/atlas/item/{job}/interrupt")
    assert status == 403

    status, body = await alice.call("DELETE", f"/atlas/item/{job}")
    assert status == 200 and body == {"requestId": job}
    assert not any(f"jobs/{job}/" in f for f in _files(vf_root))
    assert [r.id for r in await job_rows(harness)] == [uuid.UUID(second["requestId"])]
    status, _ = await alice.call("DELETE", f"/atlas/item/{job}")
    assert status == 404


async def _insert_jobs(h: Harness, account_id: uuid.UUID, n: int, model: str
                       ) -> list[uuid.UUID]:
    """``n`` rows, every two sharing one timestamp."""
    base = datetime(2026, 1, 1, tzinfo=UTC)
    ids = [uuid.uuid4() for _ in range(n)]
    async with h.engine.begin() as conn:
        await conn.execute(sa.insert(atlas_jobs), [
            {"id": i, "account_id": account_id, "model": model, "item_name": f"item {k}",
             "created_at": base + timedelta(seconds=k // 2)} for k, i in enumerate(ids)])
    return ids


async def _all_pages(acc: Any, query: str) -> list[str]:
    seen: list[str] = []
    cursor = None
    for _ in range(30):
        path = f"/atlas/item/my/2?orderBy=createdAt&{query}" + (
            f"&cursor={cursor}" if cursor else "")
        status, body = await acc.call("GET", path)
        assert status == 200, body
        seen += [i["requestId"] for i in body["items"]]
        assert body["hasNextItem"] == (body["nextCursor"] is not None)
        if not body["hasNextItem"]:
            return seen
        cursor = body["nextCursor"]
    raise AssertionError("paging did not end")


async def test_cursor_paging_over_equal_timestamps(harness: Harness, model_agent: FakeAgent
                                                   ) -> None:
    acc, other = await make_account(harness, "pager"), await make_account(harness, "other")
    await _insert_jobs(harness, acc.id, 23, "gaussian-splatting")
    await _insert_jobs(harness, acc.id, 3, "nerf2mesh")
    await _insert_jobs(harness, other.id, 5, "gaussian-splatting")
    async with harness.engine.connect() as conn:
        rows = (await conn.execute(sa.select(atlas_jobs.c.id, atlas_jobs.c.created_at).where(
            atlas_jobs.c.account_id == acc.id, atlas_jobs.c.model == "gaussian-splatting")
        )).all()
    oldest_first = [str(r.id) for r in sorted(rows, key=lambda r: (r.created_at, r.id))]
    assert await _all_pages(acc, "desc=false&limit=4") == oldest_first
    assert await _all_pages(acc, "desc=true&limit=5") == oldest_first[::-1]
    assert await _all_pages(acc, "desc=1") == oldest_first[::-1]  # default limit 10
    for bad in ("desc=maybe", "limit=51", "limit=0", "cursor=garbage", "orderBy=name"):
        status, body = await acc.call("GET", f"/atlas/item/my/2?{bad}")
        assert status == 400 and body["message"] == "Invalid request syntax", bad
    status, body = await acc.call("GET", "/atlas/history?limit=5&offset=20")
    assert status == 200 and body["total_count"] == 26 and len(body["history"]) == 5
    assert body["page"] == 5 and body["page_size"] == 5
    assert body["history"][0]["status"] == "running"


async def test_routes_need_an_account(harness: Harness) -> None:
    status, body = await harness.client.get("/atlas/item/my/2"), None
    assert status.status == 401
    # a keypair that belongs to no account
    st, body = await harness.call("GET", "/atlas/item/my/2")
    assert st == 401 and body["message"] == "Invalid Token information"


async def test_a_bearer_token_reaches_jobs_and_the_socket(harness: Harness,
                                                          model_agent: FakeAgent,
                                                          videos: dict[str, bytes]) -> None:
    from manager.atlas.accounts import ACCOUNTS
    from manager.db.tables import atlas_accounts

    acc = await make_account(harness, "bearer")
    password = "Secret-pass1!"
    hashed = await harness.app[ACCOUNTS].passwords.hash(password)
    async with harness.engine.begin() as conn:
        email = (await conn.execute(sa.update(atlas_accounts).where(
            atlas_accounts.c.id == acc.id).values(
            password_hash=hashed, email_verified_at=sa.func.now())
            .returning(atlas_accounts.c.email))).scalar_one()
    resp = await harness.client.post("/atlas/auth/sign-in",
                                     json={"id": email, "password": password})
    assert resp.status == 201, await resp.text()
    token = (await resp.json())["accessToken"].removeprefix("Bearer ").strip()
    status, body = await acc.upload("gs3d", {"itemName": "t", "Epoch": "1",
                                             "payLoad": videos["ok"]})
    assert status == 201
    resp = await harness.client.get(f"/krako/item/my-item/{body['requestId']}",
                                    headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200 and (await resp.json())["uploaderNickname"] == "bearer"
    ws = await harness.client.ws_connect(f"/ws?clientId=c9&token={token}")
    assert (await ws.receive_json(timeout=5))["status"] == "connected"
    assert (await ws.receive_json(timeout=5))["status"] == "listening"  # keepalive 0.5 s
    await ws.close()
    resp = await harness.client.get("/ws?clientId=c9&token=forged")
    assert resp.status == 401
    resp = await harness.client.get(f"/ws?token={token}")
    assert resp.status == 400 and (await resp.json())["message"] == "Invalid request syntax"


async def test_the_socket_says_closed_on_shutdown(harness: Harness) -> None:
    from manager.atlas.progress_ws import close_sockets

    acc = await make_account(harness)
    path = "/atlas/ws?clientId=bye"
    ws = await harness.client.ws_connect(path, headers=harness.headers("GET", path, acc.keys))
    assert (await ws.receive_json(timeout=5))["status"] == "connected"
    await close_sockets(harness.app)  # what the app's on_shutdown runs
    assert (await ws.receive_json(timeout=5))["status"] == "closed"
    assert (await ws.receive(timeout=5)).type.name in ("CLOSE", "CLOSED")
