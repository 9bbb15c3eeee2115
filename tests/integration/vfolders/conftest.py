"""Fixtures for the vfolder API tests: the manager integration harness (fresh
PostgreSQL database, real Redis, real app, fake agent) with folders stored under a
temporary root, plus request helpers for uploads and downloads."""
from __future__ import annotations

import io
import warnings
import zlib
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from manager.config import ManagerConfig
from tests.integration.manager.conftest import (  # noqa: F401  (fixtures)
    Harness,
    harness,
    make_manager_config,
    mgr_db_url,
)


@pytest.fixture
def vf_root(tmp_path: Path) -> Path:
    return tmp_path / "vfolders"


@pytest.fixture
def mgr_config(mgr_db_url: str, tmp_path: Path, vf_root: Path) -> ManagerConfig:  # noqa: F811
    return make_manager_config(mgr_db_url, tmp_path, vfolders={
        "root": str(vf_root), "max_size": "1m", "max_files": 5, "max_folders": 3})


async def upload(h: Harness, name: str, files: dict[str, bytes],
                 keys: tuple[str, str] | None = None, content_type: str = "application/octet-stream",
                 prefix: str = "") -> tuple[int, Any]:
    form = aiohttp.FormData()
    for filename, data in files.items():
        form.add_field("src", io.BytesIO(data), filename=filename, content_type=content_type)
    body = form()
    path = f"{prefix}/folders/{name}/upload"
    headers = h.headers("POST", path, keys, content_type="multipart/form-data")
    headers["Content-Type"] = body.content_type
    resp = await h.client.post(path, data=body, headers=headers)
    raw = await resp.read()
    return resp.status, (orjson.loads(raw) if raw else None)


async def download(h: Harness, name: str, files: list[str],
                   keys: tuple[str, str] | None = None) -> tuple[int, Any]:
    """(status, {filename: bytes}) for a success, (status, problem) otherwise."""
    path = f"/folders/{name}/download"
    resp = await h.client.get(path, data=orjson.dumps({"files": files}),
                              headers=h.headers("GET", path, keys))
    if resp.status != 200:
        return resp.status, orjson.loads(await resp.read())
    out: dict[str, bytes] = {"__total__": resp.headers["X-TOTAL-PAYLOADS-LENGTH"].encode()}
    reader = aiohttp.MultipartReader.from_response(resp)
    with warnings.catch_warnings():
        # aiohttp's own reader calls its deprecated unread_data() when a boundary
        # straddles two chunks of a streamed response (client side, not ours)
        warnings.filterwarnings("ignore", "unread_data", DeprecationWarning)
        while (part := await reader.next()) is not None:
            assert isinstance(part, aiohttp.BodyPartReader)
            assert part.headers["Content-Encoding"] == "gzip"
            raw = bytearray()
            while chunk := await part.read_chunk():
                raw.extend(chunk)
            assert part.filename is not None
            out[part.filename] = zlib.decompress(bytes(raw), wbits=16 + zlib.MAX_WBITS)
    return resp.status, out


def folder_dir(root: Path, folder_id: str) -> Path:
    return root / "local" / folder_id
