"""Downloads stream without temporary files and are capped by apparent size; concurrent
transfers are bounded per keypair (429 ``too-many-transfers``)."""
from __future__ import annotations

import asyncio
import io
import os
import tarfile
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from manager.config import ManagerConfig
from tests.integration.manager.conftest import Harness, make_manager_config
from tests.integration.vfolders.conftest import download, folder_dir, upload

PROB = "https://api.backend.ai/probs/"


@pytest.fixture
def mgr_config(mgr_db_url: str, tmp_path: Path, vf_root: Path) -> ManagerConfig:
    return make_manager_config(
        mgr_db_url, tmp_path,
        vfolders={"root": str(vf_root), "max_size": "1g", "max_download": "256m"},
        transfers={"per_keypair": 1, "wait": 0.3})


def _sparse(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        f.truncate(size)


async def test_directory_download_streams_without_temp_files(
        harness: Harness, vf_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    h = harness
    _, created = await h.call("POST", "/folders", {"name": "d"})
    assert (await upload(h, "d", {"dir/a.txt": b"alpha"}))[0] == 201
    _sparse(folder_dir(vf_root, created["id"]) / "dir" / "sparse", 64 << 20)

    def no_temp(*args: Any, **kw: Any) -> Any:
        raise AssertionError("a download must not write a temporary file")

    for name in ("TemporaryFile", "NamedTemporaryFile", "SpooledTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, no_temp)
    status, got = await download(h, "d", ["dir"])
    assert status == 200
    assert int(got["__total__"]) == len(got["dir.tar"])
    with tarfile.open(fileobj=io.BytesIO(got["dir.tar"])) as tar:
        assert sorted(tar.getnames()) == ["dir", "dir/a.txt", "dir/sparse"]
        assert tar.getmember("dir/sparse").size == 64 << 20


async def test_download_over_the_cap_is_refused_before_sending(
        harness: Harness, vf_root: Path) -> None:
    h = harness
    _, created = await h.call("POST", "/folders", {"name": "d"})
    assert (await upload(h, "d", {"small": b"x"}))[0] == 201
    root = folder_dir(vf_root, created["id"])
    os.mkdir(root / "dir")
    _sparse(root / "dir" / "huge", 2 << 30)  # 2 GiB apparent, no blocks on disk
    _sparse(root / "huge", 2 << 30)
    for files in (["dir"], ["huge"]):
        status, prob = await asyncio.wait_for(download(h, "d", files), 10)
        assert status == 406 and prob["type"] == PROB + "vfolder-limit-exceeded", prob
    status, got = await download(h, "d", ["small"])  # nothing was held
    assert status == 200 and got["small"] == b"x"


async def _held_upload(h: Harness, release: asyncio.Event) -> int:
    """An upload whose body arrives only after ``release``: it holds a transfer slot."""
    boundary = "held-boundary"
    path = "/folders/d/upload"
    headers = h.headers("POST", path, content_type="multipart/form-data")
    headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"

    async def body() -> AsyncIterator[bytes]:
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"src\"; "
               f"filename=\"held.txt\"\r\nContent-Type: application/octet-stream\r\n\r\n"
               ).encode()
        await release.wait()
        yield f"held\r\n--{boundary}--\r\n".encode()

    resp = await h.client.post(path, data=body(), headers=headers)
    await resp.read()
    return resp.status


async def test_transfers_are_bounded_per_keypair(harness: Harness) -> None:
    h = harness
    assert (await h.call("POST", "/folders", {"name": "d"}))[0] == 201
    release = asyncio.Event()
    held = asyncio.ensure_future(_held_upload(h, release))
    try:
        async def second() -> tuple[int, Any]:
            return await upload(h, "d", {"other": b"x"})

        deadline = asyncio.get_running_loop().time() + 10
        status, prob = await second()
        while status != 429 and asyncio.get_running_loop().time() < deadline:
            status, prob = await second()  # until the held upload holds its slot
        assert status == 429 and prob["type"] == PROB + "too-many-transfers", prob
        status, _ = await download(h, "d", ["other"])
        assert status == 429
        other = await h.keypair()
        assert (await h.call("POST", "/folders", {"name": "e"}, other))[0] == 201
        assert (await upload(h, "e", {"x": b"x"}, keys=other))[0] == 201  # not affected
    finally:
        release.set()
        assert await asyncio.wait_for(held, 10) == 201
    assert (await upload(h, "d", {"after": b"x"}))[0] == 201
