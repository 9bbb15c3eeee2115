"""The job API on a real cluster (manager and agent processes, Docker): a fake model
image built from kraken/python:latest with the ``kraken.atlas.*`` labels and a tiny
program that follows the job-directory contract, so the whole flow is real except the
model: queue → session → batch run → progress over the WebSocket → OK → download →
delete, and the session always destroyed (also for a program that exits without a
result, and for an interrupt)."""
from __future__ import annotations

import asyncio
import io
import json
import secrets
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from manager.atlas import tokens
from tests.e2e.cluster import Cluster
from tests.e2e.conftest import PG_URL, REDIS_URL
from tests.integration.atlas.conftest import make_video
from tests.integration.manager.signing import signed_headers

pytestmark = pytest.mark.e2e
MODEL = "e2e-fake-model"

PROGRAM = r'''
import json, os, pathlib, sys, time
d = pathlib.Path(sys.argv[1])
req = json.loads((d / "request.json").read_text())
assert (d / req["input"]).stat().st_size > 0
def progress(stage, pct):
    line = json.dumps({"stage": stage, "percent": pct, "message": stage, "time": time.time()})
    with open(d / "progress.jsonl", "a") as f:
        f.write(line + "\n")
    print("@@progress " + line, flush=True)
for stage, pct in (("frames", 10), ("train", 50), ("export", 90)):
    progress(stage, pct)
    time.sleep(60 if req["itemName"] == "slow" else 0.4)
if req["itemName"] == "noresult":
    sys.exit(3)
out = d / "outputs"
out.mkdir(exist_ok=True)
(out / "point_cloud.ply").write_bytes(b"ply\nfake " + req["requestId"].encode())
(out / "thumbnail.png").write_bytes(b"\x89PNG")
(d / "log.txt").write_text("threads " + os.environ.get("KRAKEN_ATLAS_THREADS", "?") + "\n")
tmp = d / "result.json.tmp"
tmp.write_text(json.dumps({"status": "OK", "error": None, "outputs": {"1": "point_cloud.ply"},
                           "thumbnail": "thumbnail.png", "metrics": {"seconds": 1.2}}))
os.replace(tmp, d / "result.json")
'''


@pytest.fixture(scope="module")
def model_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    ctx = tmp_path_factory.mktemp("atlas-image")
    (ctx / "fake_model.py").write_text(PROGRAM)
    tag = "kraken-test/atlas-fake:" + uuid.uuid4().hex[:8]
    # a model of its own: real model images (kraken/gaussian-splatting:latest) may be
    # present on the machine and must not be picked instead
    labels = {"kraken.atlas.model": MODEL, "kraken.atlas.model-id": "90",
              "kraken.atlas.entry": "python3 /opt/fake_model.py", "kraken.atlas.gpu": "optional",
              "kraken.atlas.outputs": '{"1": "point_cloud.ply"}'}
    (ctx / "Dockerfile").write_text(
        "FROM kraken/python:latest\nCOPY fake_model.py /opt/fake_model.py\n"
        + "".join(f"LABEL {k}={json.dumps(v)}\n" for k, v in labels.items()))
    subprocess.run(["docker", "build", "-q", "-t", tag, str(ctx)], check=True,
                   capture_output=True, timeout=300)
    yield tag
    subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)


class AtlasCluster(Cluster):
    def _write_keys(self) -> Path:
        keys = super()._write_keys()
        tokens.generate(keys / "atlas.key")
        self.manager_sections = f'[atlas]\ntoken_key_file = "{keys}/atlas.key"\n' \
            + self.manager_sections
        return keys

    manager_sections = """[atlas.jobs]
poll_interval = 0.3
claim_interval = 1.0
cpu = 1
mem = "512m"
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory, model_image: str
                  ) -> AsyncIterator[Cluster]:
    c = AtlasCluster(tmp_path_factory.mktemp("cluster"), PG_URL, REDIS_URL)
    try:
        await c.start()
        yield c
    finally:
        await c.stop()


class Client:
    def __init__(self, cluster: Cluster, session: aiohttp.ClientSession) -> None:
        self.c, self.http = cluster, session
        out = cluster.manager_cli("keypair", "create", "-c", str(cluster.workdir / "manager.toml"),
                                  "--user-id", "atlas-e2e", "--shell")
        env = dict(line.removeprefix("export ").split("=", 1)
                   for line in out.splitlines() if line.startswith("export "))
        self.access = env["BACKEND_ACCESS_KEY"].strip("'\"")
        self.secret = env["BACKEND_SECRET_KEY"].strip("'\"")
        cluster.sql("INSERT INTO atlas_accounts (id, email, nickname, access_key) "
                    "VALUES ($1, $2, 'e2e', $3)", uuid.uuid4(),
                    f"e2e-{secrets.token_hex(3)}@example.com", self.access)

    def headers(self, method: str, path: str, ctype: str = "application/json"
                ) -> dict[str, str]:
        return signed_headers(self.access, self.secret, method, path,
                              f"127.0.0.1:{self.c.api_port}", content_type=ctype)

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else b""
        async with self.http.request(method, self.c.endpoint + path, data=data,
                                     headers=self.headers(method, path)) as resp:
            raw = await resp.read()
            return resp.status, (json.loads(raw) if raw else None)

    async def upload(self, video: bytes, name: str, client_id: str) -> str:
        form = aiohttp.FormData()
        form.add_field("itemName", name)
        form.add_field("Epoch", "2")
        form.add_field("clientId", client_id)
        form.add_field("payLoad", io.BytesIO(video), filename="clip.mp4",
                       content_type="video/mp4")
        body = form()
        headers = self.headers("POST", f"/atlas/item/{MODEL}", "multipart/form-data")
        headers["Content-Type"] = body.content_type
        async with self.http.post(self.c.endpoint + f"/atlas/item/{MODEL}", data=body,
                                  headers=headers) as resp:
            out = await resp.json()
            assert resp.status == 201, out
            return str(out["requestId"])

    async def final(self, job: str, timeout: float = 120) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            status, detail = await self.call("GET", f"/atlas/item/detail/{job}")
            assert status == 200, detail
            if detail["status"] != "PROGRESS":
                return dict(detail)
            await asyncio.sleep(0.3)
        raise AssertionError(f"job {job} did not end in {timeout}s")


@pytest_asyncio.fixture(loop_scope="module")
async def client(cluster: Cluster) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as session:
        yield await asyncio.to_thread(Client, cluster, session)


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_video(tmp_path_factory.mktemp("video") / "clip.mp4")


def no_live_sessions(cluster: Cluster) -> bool:
    rows = cluster.sql_rows("SELECT status FROM kernels")
    return all(r["status"] in ("TERMINATED", "CANCELLED") for r in rows) \
        and not cluster.containers()


@pytest.mark.asyncio(loop_scope="module")
async def test_a_job_runs_on_the_cluster(cluster: Cluster, client: Client, video: bytes
                                         ) -> None:
    path = "/ws?clientId=e2e-1"
    async with client.http.ws_connect(cluster.endpoint + path,
                                      headers=client.headers("GET", path)) as ws:
        assert (await ws.receive_json(timeout=10))["status"] == "connected"
        job = await client.upload(video, "cup", "e2e-1")
        messages = []
        while True:
            msg = await ws.receive_json(timeout=120)
            messages.append(msg)
            if msg.get("result"):
                break
    stages = [m["stage"] for m in messages if m["status"] == "progress"]
    assert stages[-1] == "done" and messages[-1]["result"] == "OK", messages
    assert "export" in stages
    detail = await client.final(job)
    assert detail["status"] == "OK" and detail["percent"] == 100
    async with client.http.get(cluster.endpoint + f"/atlas/item/download/{job}",
                               headers=client.headers("GET", f"/atlas/item/download/{job}")
                               ) as resp:
        assert resp.status == 200
        assert await resp.read() == b"ply\nfake " + job.encode()
        assert resp.headers["Content-Disposition"] == 'attachment; filename="cup.ply"'
    async with client.http.get(cluster.endpoint + f"/atlas/item/log/{job}",
                               headers=client.headers("GET", f"/atlas/item/log/{job}")) as resp:
        assert await resp.read() == b"threads 1\n"
    await asyncio.to_thread(cluster.wait, lambda: no_live_sessions(cluster), 30,
                            "the job's session to end")
    status, _ = await client.call("DELETE", f"/atlas/item/{job}")
    assert status == 200
    root = Path(cluster.workdir, "vfolders")
    assert not await asyncio.to_thread(lambda: list(root.glob(f"local/*/jobs/{job}")))


@pytest.mark.asyncio(loop_scope="module")
async def test_no_result_and_interrupt_end_as_ng(cluster: Cluster, client: Client,
                                                 video: bytes) -> None:
    job = await client.upload(video, "noresult", "e2e-2")
    detail = await client.final(job)
    assert detail["status"] == "NG"
    assert detail["error"] == "the job's program exited with status 3 without a result"
    await asyncio.to_thread(cluster.wait, lambda: no_live_sessions(cluster), 30,
                            "the job's session to end")

    job = await client.upload(video, "slow", "e2e-3")
    for _ in range(400):  # the program reports its first stage, then sleeps
        if (await client.call("GET", f"/atlas/item/detail/{job}"))[1]["stage"] == "frames":
            break
        await asyncio.sleep(0.3)
    status, _ = await client.call("POST", f"/atlas/item/{job}/interrupt")
    assert status == 200
    detail = await client.final(job, timeout=60)
    assert (detail["status"], detail["error"]) == ("NG", "interrupted")
    await asyncio.to_thread(cluster.wait, lambda: no_live_sessions(cluster), 30,
                            "the job's session to end")
