"""Fixtures for the job API tests: the manager harness (fresh PostgreSQL database, real
Redis, the real app) with folders under a temporary root, a fake agent offering a model
image labelled like the real ones, accounts, and small videos made with ffmpeg."""
from __future__ import annotations

import io
import secrets
import subprocess
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import sqlalchemy as sa

from manager.atlas import tokens
from manager.config import ManagerConfig
from manager.db.tables import atlas_accounts, atlas_jobs
from tests.integration.manager.conftest import (  # noqa: F401  (fixtures)
    FakeAgent,
    Harness,
    harness,
    make_manager_config,
    mgr_db_url,
)

GS_IMAGE = "kraken/gs-fake:latest"
GS_LABELS = {"kraken.atlas.model": "gaussian-splatting", "kraken.atlas.model-id": "2",
             "kraken.atlas.entry": "python3 /opt/fake_model.py", "kraken.atlas.gpu": "optional",
             "kraken.atlas.outputs": '{"1": "point_cloud.ply"}'}
N2M_LABELS = {**GS_LABELS, "kraken.atlas.model": "nerf2mesh", "kraken.atlas.model-id": "1",
              "kraken.atlas.outputs": '{"1": "mesh_1.glb", "2": "mesh_0.glb", '
                                      '"3": "turntable.gif"}'}


class Account:
    def __init__(self, h: Harness, keys: tuple[str, str], account_id: uuid.UUID) -> None:
        self.h, self.keys, self.id = h, keys, account_id

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return await self.h.call(method, path, body, self.keys)

    async def get_raw(self, path: str) -> aiohttp.ClientResponse:
        return await self.h.client.get(path, headers=self.h.headers("GET", path, self.keys))

    async def upload(self, model: str, fields: dict[str, Any], *,
                     path: str | None = None) -> tuple[int, Any]:
        form = aiohttp.FormData(default_to_multipart=True)
        for name, value in fields.items():
            if isinstance(value, bytes):
                form.add_field(name, io.BytesIO(value), filename="clip.mp4",
                               content_type="video/mp4")
            else:
                form.add_field(name, str(value))
        body = form()
        path = path or f"/atlas/item/{model}"
        headers = self.h.headers("POST", path, self.keys, content_type="multipart/form-data")
        headers["Content-Type"] = body.content_type
        resp = await self.h.client.post(path, data=body, headers=headers)
        raw = await resp.read()
        return resp.status, (orjson.loads(raw) if raw else None)


async def make_account(h: Harness, nickname: str = "nick") -> Account:
    keys = await h.keypair(user_id=f"atlas-{nickname}")
    account_id = uuid.uuid4()
    async with h.engine.begin() as conn:
        await conn.execute(sa.insert(atlas_accounts).values(
            id=account_id, email=f"{nickname}-{secrets.token_hex(3)}@example.com",
            nickname=nickname, access_key=keys[0]))
    return Account(h, keys, account_id)


async def job_rows(h: Harness) -> list[Any]:
    async with h.engine.connect() as conn:
        return list((await conn.execute(sa.select(atlas_jobs))).all())


def make_video(path: Path, seconds: float = 2, size: str = "64x48") -> bytes:
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc=size={size}:rate=10", "-t", str(seconds), "-pix_fmt", "yuv420p",
                    "-c:v", "libx264", str(path)], check=True, timeout=60)
    return path.read_bytes()


@pytest.fixture
def vf_root(tmp_path: Path) -> Path:
    return tmp_path / "vfolders"


@pytest.fixture
def upload_dir(tmp_path: Path) -> Path:
    return tmp_path / "uploads"


@pytest.fixture
def atlas_jobs_config() -> dict[str, Any]:
    return {"drive": False}


@pytest.fixture
def mgr_config(mgr_db_url: str, tmp_path: Path, vf_root: Path, upload_dir: Path,  # noqa: F811
               atlas_jobs_config: dict[str, Any]) -> ManagerConfig:
    key = tokens.generate(tmp_path / "atlas.key")
    return make_manager_config(mgr_db_url, tmp_path, vfolders={"root": str(vf_root)},
                               atlas={"token_key_file": str(key), "jobs": {
                                   "upload_dir": str(upload_dir), "poll_interval": 0.2,
                                   "claim_interval": 0.5, "lease": 3.0, "keepalive": 0.5,
                                   "limits": {"gaussian-splatting": {
                                       "max_seconds": 3, "max_bytes": "64k"}},
                                   **atlas_jobs_config}})


@pytest.fixture
async def model_agent(harness: Harness) -> FakeAgent:  # noqa: F811
    """A fake agent holding the gaussian-splatting and nerf2mesh model images."""
    fake = harness.fake_agent("atlas-agent")
    fake.images = [{"name": GS_IMAGE, "id": "sha256:gs", "labels": GS_LABELS},
                   {"name": "kraken/n2m-fake:latest", "id": "sha256:n2m",
                    "labels": N2M_LABELS}]
    await fake.start()
    return fake


@pytest.fixture(scope="session")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("videos")
    return {"ok": make_video(d / "ok.mp4"), "long": make_video(d / "long.mp4", seconds=5),
            "random": secrets.token_bytes(4000)}
