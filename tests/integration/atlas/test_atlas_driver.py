"""The job driver against real PostgreSQL, Redis and the app, with a fake agent (no
containers): queue → session → batch run → progress over the WebSocket → result →
downloads → session destroyed; a program that ends without a result; an interrupt; a
driver that dies and another that takes its lease over. The model program is played by
the test, which writes the job directory as the contract says."""
from __future__ import annotations

import asyncio
import io
import tarfile
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from common.status import SessionStatus
from manager.api.keys import CONTROL, CREATOR, DB, EVENTS
from manager.atlas.api_jobs import DRIVER, JOBS
from manager.atlas.driver import JobDriver
from manager.db.tables import atlas_jobs
from tests.integration.atlas.conftest import Account, FakeAgent, Harness, make_account
from tests.integration.manager.conftest import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def atlas_jobs_config() -> dict[str, Any]:
    return {"drive": True}


def job_dir(vf_root: Path, job: str) -> Path:
    found = list(vf_root.glob(f"local/*/jobs/{job}"))
    assert len(found) == 1, found
    return found[0]


def progress(d: Path, stage: str, percent: float) -> None:
    line = {"stage": stage, "percent": percent, "message": stage, "time": time.time()}
    with open(d / "progress.jsonl", "ab") as f:
        f.write(orjson.dumps(line) + b"\n")


def finish(d: Path, ply: bytes) -> None:
    (d / "outputs").mkdir(exist_ok=True)
    (d / "outputs" / "point_cloud.ply").write_bytes(ply)
    (d / "outputs" / "thumbnail.png").write_bytes(b"\x89PNG fake")
    (d / "log.txt").write_text("held-out PSNR: 27.31 dB over 6 views\n")
    result = {"status": "OK", "error": None, "outputs": {"1": "point_cloud.ply"},
              "thumbnail": "thumbnail.png", "metrics": {"psnr": 27.31, "seconds": 1.0}}
    (d / "result.json.tmp").write_bytes(orjson.dumps(result))
    (d / "result.json.tmp").rename(d / "result.json")


async def row(h: Harness, job: str) -> Any:
    async with h.engine.connect() as conn:
        return (await conn.execute(sa.select(atlas_jobs).where(
            atlas_jobs.c.id == uuid.UUID(job)))).first()


async def final(h: Harness, job: str, timeout: float = 20.0) -> Any:
    async def done() -> Any:
        r = await row(h, job)
        return r if r is not None and r.status != "PROGRESS" else None
    return await wait_for(done, timeout, "the job to end")


async def submit(acc: Account, videos: dict[str, bytes], client: str = "c1") -> str:
    status, body = await acc.upload("gs3d", {"itemName": "my cup", "Epoch": "3",
                                             "payLoad": videos["ok"], "clientId": client})
    assert status == 201, body
    return str(body["requestId"])


async def started(h: Harness, fake: FakeAgent, job: str) -> None:
    async def ok() -> bool:
        r = await row(h, job)
        return bool(r is not None and r.started_at is not None and fake.kernels)
    await wait_for(ok, 20, "the job's run to start")


async def session_statuses(h: Harness) -> list[str]:
    return [s.status for s in await h.sessions()]


async def test_a_job_runs_reports_progress_and_downloads(
        harness: Harness, model_agent: FakeAgent, videos: dict[str, bytes],
        vf_root: Path) -> None:
    acc = await make_account(harness, "alice")
    model_agent.hold_execute = asyncio.Event()
    path = "/atlas/ws?clientId=c1"
    ws = await harness.client.ws_connect(path, headers=harness.headers("GET", path, acc.keys))
    assert (await ws.receive_json(timeout=5)) == {"status": "connected",
                                                  "details": "server connected"}
    job = await submit(acc, videos)
    await started(harness, model_agent, job)
    created = model_agent.created[0]
    assert created.mounts and created.mounts[0]["target"] == "/home/work/atlas"
    d = job_dir(vf_root, job)
    progress(d, "frames", 10)
    progress(d, "train", 55.5)
    seen: list[dict[str, Any]] = []
    while not any(m.get("percent") == 55.5 for m in seen):
        seen.append(await ws.receive_json(timeout=10))
    assert {"status": "progress", "details": "train 55.5%", "requestId": job,
            "stage": "train", "percent": 55.5, "message": "train"} in seen
    assert any(m["status"] == "listening" for m in seen) or True
    status, detail = await acc.call("GET", f"/atlas/item/detail/{job}")
    assert detail["status"] == "PROGRESS" and detail["stage"] == "train"
    ply = b"ply\nformat binary_little_endian 1.0\n" + bytes(range(256)) * 40
    finish(d, ply)
    model_agent.hold_execute.set()
    while (msg := await ws.receive_json(timeout=10)).get("result") is None:
        pass
    assert msg == {"status": "progress", "details": "done 100%", "requestId": job,
                   "stage": "done", "percent": 100, "result": "OK"}
    r = await final(harness, job)
    assert (r.status, r.outputs, r.percent) == ("OK", {"1": "point_cloud.ply"}, 100.0)
    await wait_for(lambda: model_agent.destroyed, 10, "the session to be destroyed")
    assert not model_agent.kernels

    resp = await acc.get_raw(f"/atlas/item/download/{job}?code=1")
    assert resp.status == 200 and await resp.read() == ply
    assert resp.headers["Content-Disposition"] == 'attachment; filename="my cup.ply"'
    assert resp.headers["Content-Type"] == "application/octet-stream"
    resp = await acc.get_raw(f"/atlas/item/download/{job}?code=2")
    assert resp.status == 404
    resp = await acc.get_raw(f"/atlas/item/thumbnail/{job}")
    assert resp.status == 200 and await resp.read() == b"\x89PNG fake"
    resp = await acc.get_raw(f"/atlas/item/log/{job}")
    assert b"PSNR" in await resp.read()
    resp = await acc.get_raw(f"/atlas/item/request/{job}")
    with tarfile.open(fileobj=io.BytesIO(await resp.read())) as tf:
        assert sorted(tf.getnames()) == ["input/input.mp4", "request.json"]
        request = orjson.loads(tf.extractfile("request.json").read())  # type: ignore[union-attr]
        assert request["model"] == "gaussian-splatting" and request["epoch"] == 3
    resp = await acc.get_raw(f"/atlas/item/reply/{job}")
    with tarfile.open(fileobj=io.BytesIO(await resp.read())) as tf:
        assert sorted(tf.getnames()) == ["progress.jsonl", "result.json"]
    resp = await acc.get_raw(f"/atlas/item/output/{job}")
    with zipfile.ZipFile(io.BytesIO(await resp.read())) as zf:
        assert sorted(zf.namelist()) == ["point_cloud.ply", "thumbnail.png"]
        assert zf.read("point_cloud.ply") == ply
    status, hist = await acc.call("GET", "/history")
    assert hist["history"][0]["status"] == "completed"
    status, _ = await acc.call("DELETE", f"/atlas/item/{job}")
    assert status == 200
    assert not await asyncio.to_thread(lambda: list(vf_root.glob(f"local/*/jobs/{job}")))
    await ws.close()


async def test_a_program_that_exits_without_a_result_is_ng(
        harness: Harness, model_agent: FakeAgent, videos: dict[str, bytes]) -> None:
    acc = await make_account(harness)
    job = await submit(acc, videos)
    r = await final(harness, job)
    assert r.status == "NG" and "without a result" in r.error
    await wait_for(lambda: model_agent.destroyed, 10, "the session to be destroyed")
    status, detail = await acc.call("GET", f"/atlas/item/detail/{job}")
    assert detail["status"] == "NG" and detail["error"] == r.error


async def test_interrupt_ends_the_session(harness: Harness, model_agent: FakeAgent,
                                          videos: dict[str, bytes]) -> None:
    acc = await make_account(harness)
    model_agent.hold_execute = asyncio.Event()
    job = await submit(acc, videos)
    await started(harness, model_agent, job)
    status, body = await acc.call("POST", "/interrupt", {"requestId": job})
    assert status == 200, body
    r = await final(harness, job)
    assert (r.status, r.error) == ("NG", "interrupted")
    await wait_for(lambda: not model_agent.kernels, 10, "the session to be destroyed")

    async def all_terminated() -> bool:  # the agent's reply lands a moment after
        return set(await session_statuses(harness)) <= {SessionStatus.TERMINATED.value}
    await wait_for(all_terminated, 10, "the session row to be TERMINATED")
    model_agent.hold_execute.set()


async def test_another_driver_takes_over_an_expired_lease(
        harness: Harness, model_agent: FakeAgent, videos: dict[str, bytes],
        vf_root: Path) -> None:
    acc = await make_account(harness)
    model_agent.hold_execute = asyncio.Event()
    job = await submit(acc, videos)
    await started(harness, model_agent, job)
    app = harness.app
    first = app[DRIVER]
    await first.close()  # "killed": its lease stays until it expires
    second = JobDriver(app[DB], app[JOBS], app[CREATOR], app[CONTROL], app[EVENTS].client,
                       name="replica-2")
    second.start()
    try:
        async def taken() -> bool:
            r = await row(harness, job)
            return bool(r.driver == "replica-2")
        await wait_for(taken, 15, "the second driver to take the lease")
        finish(job_dir(vf_root, job), b"ply\n")
        r = await final(harness, job)
        assert r.status == "OK"
        assert len(model_agent.created) == 1  # the session was reused, not created again
        await wait_for(lambda: not model_agent.kernels, 10, "the session to be destroyed")
    finally:
        model_agent.hold_execute.set()
        await second.close()


async def _nothing_left(h: Harness, fake: FakeAgent, vf_root: Path, job: str) -> None:
    assert await row(h, job) is None
    assert not await asyncio.to_thread(lambda: list(vf_root.glob(f"local/*/jobs/{job}")))
    await wait_for(lambda: not fake.kernels, 10, "no session left")


async def test_concurrent_deletes_and_a_delete_racing_the_result(
        harness: Harness, model_agent: FakeAgent, videos: dict[str, bytes],
        vf_root: Path) -> None:
    acc = await make_account(harness)
    model_agent.hold_execute = asyncio.Event()
    job = await submit(acc, videos)
    await started(harness, model_agent, job)
    results = await asyncio.gather(*(acc.call("DELETE", f"/atlas/item/{job}")
                                     for _ in range(3)))
    assert sorted(s for s, _ in results)[0] == 200
    assert {s for s, _ in results} <= {200, 404}
    await _nothing_left(harness, model_agent, vf_root, job)

    job = await submit(acc, videos)
    await started(harness, model_agent, job)
    finish(job_dir(vf_root, job), b"ply\n")  # the driver finishes while the delete runs
    status, _ = await acc.call("DELETE", f"/atlas/item/{job}")
    assert status in (200, 404)
    await _nothing_left(harness, model_agent, vf_root, job)
    model_agent.hold_execute.set()


async def test_withdrawal_takes_jobs_sessions_and_the_folder(
        harness: Harness, model_agent: FakeAgent, videos: dict[str, bytes],
        vf_root: Path) -> None:
    acc = await make_account(harness)
    model_agent.hold_execute = asyncio.Event()
    running = await submit(acc, videos)
    await started(harness, model_agent, running)
    path = "/atlas/auth/user"
    resp = await harness.client.delete(path, headers=harness.headers("DELETE", path, acc.keys))
    assert resp.status == 200, await resp.text()
    await _nothing_left(harness, model_agent, vf_root, running)
    folders = await asyncio.to_thread(lambda: list(vf_root.glob("local/[!.]*")))
    assert folders == []  # the `atlas` folder went with the account
    model_agent.hold_execute.set()
