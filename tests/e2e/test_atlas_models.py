"""The generation product end to end with the REAL model images: a user signs up (the
confirmation mail goes through a real SMTP server), signs in, uploads the synthetic
scene's video (rendered by the test with known poses and encoded as an mp4, so the whole
video → frames → structure from motion → training path runs) to gaussian-splatting and
nerf2mesh, follows both jobs over the progress WebSocket to OK, downloads the results
(the .ply parses with the reference layout's 62 properties, the .glb loads with trimesh
with vertex colours), and deletes them; a bad upload answers 400 and leaves nothing.
"""
from __future__ import annotations

import asyncio
import io
import re
import secrets
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from kernels.models import ply, synthetic
from manager.atlas import tokens
from tests.e2e.cluster import Cluster
from tests.e2e.conftest import PG_URL, REDIS_URL
from tests.smtp_inbox import Inbox, running_inbox

pytestmark = pytest.mark.e2e
IMAGES = ("kraken/gaussian-splatting:latest", "kraken/nerf2mesh:latest")
PASSWORD = "Splat-and-mesh-42"


def _image_present(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True,
                          check=False).returncode == 0


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[Inbox, int]]:
    with running_inbox() as served:
        yield served


class ModelCluster(Cluster):
    smtp_port = 0

    def _write_keys(self) -> Path:
        keys = super()._write_keys()
        tokens.generate(keys / "atlas.key")
        # the synthetic clip is short and small: nerf2mesh's seed minimums (20 s, HD,
        # 50 MB) are lowered here, as an operator may (docs/atlas.md)
        self.manager_sections = f"""
[atlas]
token_key_file = "{keys}/atlas.key"
public_url = "http://127.0.0.1:{self.api_port}"
[atlas.smtp]
host = "127.0.0.1"
port = {self.smtp_port}
from_address = "atlas@example.com"
[atlas.jobs]
poll_interval = 0.5
claim_interval = 1.0
cpu = 1
mem = "3g"
[atlas.jobs.limits.nerf2mesh]
min_seconds = 0
min_bytes = "0"
min_resolution = [0, 0]
"""
        return keys


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory, smtp: tuple[Inbox, int]
                  ) -> AsyncIterator[Cluster]:
    missing = [t for t in IMAGES if not _image_present(t)]
    if missing:
        pytest.fail(f"model images missing: {missing}; run scripts/dev images")
    c = ModelCluster(tmp_path_factory.mktemp("cluster"), PG_URL, REDIS_URL)
    c.smtp_port = smtp[1]
    try:
        await c.start()
        yield c
    finally:
        await c.stop()


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("video") / "orbit.mp4"
    synthetic.write_video(path, 640, 480, n_views=48, fps=12)
    return path.read_bytes()


async def _call(http: aiohttp.ClientSession, c: Cluster, method: str, path: str,
                token: str | None = None, body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, c.endpoint + path, json=body, headers=headers) as resp:
        raw = await resp.read()
        kind = resp.headers.get("Content-Type", "")
        return resp.status, (await resp.json(content_type=None) if "json" in kind else raw)


async def _sign_up_and_in(http: aiohttp.ClientSession, c: Cluster, inbox: Inbox) -> str:
    address = f"maker-{secrets.token_hex(3)}@example.com"
    status, _ = await _call(http, c, "POST", "/atlas/auth/sign-up", body={
        "email": address, "password": PASSWORD, "nickname": "maker"})
    assert status == 201
    status, body = await _call(http, c, "POST", "/atlas/auth/sign-in",
                               body={"id": address, "password": PASSWORD})
    assert status == 403, body  # not confirmed yet
    mail = (await inbox.wait(address)).get_payload(decode=True)
    link = re.search(r"http://127\.0\.0\.1:\d+(/atlas/auth/confirm-email\?\S+)", mail.decode())
    assert link, mail
    status, _ = await _call(http, c, "GET", link.group(1))
    assert status == 200
    status, body = await _call(http, c, "POST", "/atlas/auth/sign-in",
                               body={"id": address, "password": PASSWORD})
    assert status == 201, body
    return str(body["accessToken"])


async def _upload(http: aiohttp.ClientSession, c: Cluster, token: str, route: str,
                  video: bytes, fields: dict[str, str]) -> tuple[int, Any]:
    form = aiohttp.FormData()
    for key, value in fields.items():
        form.add_field(key, value)
    form.add_field("payLoad", io.BytesIO(video), filename="orbit.mp4", content_type="video/mp4")
    async with http.post(c.endpoint + route, data=form,
                         headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status, await resp.json(content_type=None)


def _job_dirs(c: Cluster) -> list[Path]:
    return list(Path(c.workdir, "vfolders").glob("local/*/jobs/*"))


@pytest.mark.asyncio(loop_scope="module")
async def test_video_to_splats_and_mesh(cluster: Cluster, smtp: tuple[Inbox, int],
                                        video: bytes) -> None:
    async with aiohttp.ClientSession() as http:
        token = await _sign_up_and_in(http, cluster, smtp[0])
        status, models = await _call(http, cluster, "GET", "/atlas/models")
        installed = {m["name"]: m["installed"] for m in models["models"]}
        assert installed["gaussian-splatting"] and installed["nerf2mesh"]
        assert installed["InstantMesh"] is False

        # a bad upload: 400 with the seed's message, nothing stored
        status, body = await _upload(http, cluster, token, "/atlas/item/gs3d", b"not a video",
                                     {"itemName": "junk", "Epoch": "1"})
        assert status == 400 and body["message"], body
        assert not _job_dirs(cluster)

        client_id = "maker-" + secrets.token_hex(4)
        async with http.ws_connect(cluster.endpoint + f"/ws?clientId={client_id}&token={token}"
                                   ) as ws:
            assert (await ws.receive_json(timeout=10))["status"] == "connected"
            jobs = {}
            for route, name in (("/atlas/item/gs3d", "orbit-splats"),
                                ("/atlas/item/nerf2mesh", "orbit-mesh")):
                status, body = await _upload(http, cluster, token, route, video, {
                    "itemName": name, "Epoch": "1", "clientId": client_id})
                assert status == 201, body
                jobs[body["requestId"]] = name
            finals: dict[str, dict[str, Any]] = {}
            stages: dict[str, set[str]] = {job: set() for job in jobs}
            while len(finals) < len(jobs):
                msg = await ws.receive_json(timeout=600)
                job = msg.get("requestId")
                if msg["status"] == "progress" and job in stages:
                    stages[job].add(msg["stage"])
                if msg.get("result") or msg["status"] == "error":
                    finals[job] = msg
        for job, msg in finals.items():
            status, detail = await _call(http, cluster, "GET", f"/atlas/item/detail/{job}",
                                         token)
            assert msg.get("result") == "OK", (msg, detail)
            assert {"frames", "sfm"} <= stages[job], stages[job]
        splats, mesh = list(jobs)

        status, raw = await _call(http, cluster, "GET", f"/atlas/item/download/{splats}",
                                  token)
        assert status == 200
        count, names, _ = ply.read_header(raw)
        assert len(names) == 62 and names[:3] == ["x", "y", "z"] and count > 100
        assert names[-8:] == ["opacity", "scale_0", "scale_1", "scale_2",
                              "rot_0", "rot_1", "rot_2", "rot_3"]
        status, log = await _call(http, cluster, "GET", f"/atlas/item/log/{splats}", token)
        assert b"held-out PSNR" in log

        import trimesh
        for code in ("1", "2"):
            status, raw = await _call(http, cluster, "GET",
                                      f"/atlas/item/download/{mesh}?code={code}", token)
            assert status == 200
            loaded = trimesh.load(io.BytesIO(raw), file_type="glb", force="mesh")
            assert len(loaded.vertices) > 100 and len(loaded.faces) > 100
            assert loaded.visual.kind == "vertex"
        status, gif = await _call(http, cluster, "GET", f"/atlas/item/download/{mesh}?code=3",
                                  token)
        assert status == 200 and gif[:6] in (b"GIF89a", b"GIF87a")
        status, png = await _call(http, cluster, "GET", f"/atlas/item/thumbnail/{splats}",
                                  token)
        assert status == 200 and png[:8] == b"\x89PNG\r\n\x1a\n"

        for job in jobs:
            status, _ = await _call(http, cluster, "DELETE", f"/atlas/item/{job}", token)
            assert status == 200
            status, _ = await _call(http, cluster, "GET", f"/atlas/item/detail/{job}", token)
            assert status == 404
        assert not _job_dirs(cluster)
        rows = cluster.sql_rows("SELECT status FROM kernels")
        assert all(r["status"] in ("TERMINATED", "CANCELLED") for r in rows)
        await asyncio.to_thread(cluster.wait, lambda: not cluster.containers(), 30,
                                "the job sessions' containers to go")
