"""The same attacks on a kernel's own files (``/kernel/:id/upload``, ``/download``): the
session swaps ``/home/work/p`` with a symlink to a host directory while the REST API
is hammered; a FIFO in the session never parks the agent."""
from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.integration.confinement.conftest import (
    SECRET,
    Harness,
    assert_untouched,
    canary,
    hammer,
    open_session,
    wait_swapping,
)

pytestmark = pytest.mark.integration


async def kernel_upload(h: Harness, kid: str, files: dict[str, bytes]) -> tuple[int, Any]:
    form = aiohttp.FormData()
    for name, data in files.items():
        form.add_field("src", io.BytesIO(data), filename=name,
                       content_type="application/octet-stream")
    body = form()
    path = f"/kernel/{kid}/upload"
    headers = h.headers("POST", path, content_type="multipart/form-data")
    headers["Content-Type"] = body.content_type
    resp = await h.client.post(path, data=body, headers=headers)
    raw = await resp.read()
    return resp.status, (orjson.loads(raw) if raw and resp.status != 204 else None)


async def kernel_download(h: Harness, kid: str, files: list[str]) -> tuple[int, bytes]:
    path = f"/kernel/{kid}/download"
    resp = await h.client.get(path, data=orjson.dumps({"files": files}),
                              headers=h.headers("GET", path))
    return resp.status, await resp.read()


def _scratch(tmp_path: Path) -> Path:
    """The only kernel's scratch dir on the host."""
    (path,) = (p for p in (tmp_path / "scratch").iterdir() if p.is_dir())  # not its .img
    return path




async def test_scratch_upload_race_writes_nothing_outside(cluster: Harness,
                                                          tmp_path: Path) -> None:
    keys = canary(tmp_path, "admin.key")
    session = await open_session(cluster)
    await session.start_swap("/home/work", keys)
    await wait_swapping(_scratch(tmp_path) / ".swapping")
    parts = {f"p/x{i}": b"pwned" for i in range(16)} | {"p/sub/y": b"pwned"}

    async def attempt() -> int:
        return (await kernel_upload(cluster, session.id, parts))[0]

    statuses = await hammer(attempt)
    assert_untouched(keys, "admin.key")
    assert set(statuses) <= {204, 400, 403}, statuses
    assert statuses.get(204), statuses


async def test_scratch_download_race_returns_nothing_outside(cluster: Harness,
                                                             tmp_path: Path) -> None:
    keys = canary(tmp_path, "b-keypair")
    session = await open_session(cluster)
    await session.start_swap("/home/work", keys, "b-keypair")
    await wait_swapping(_scratch(tmp_path) / ".swapping")
    leaks = 0

    async def attempt() -> int:
        nonlocal leaks
        status, body = await kernel_download(cluster, session.id, ["p/b-keypair"] * 5)
        leaks += SECRET.encode() in body
        return status

    statuses = await hammer(attempt)
    assert leaks == 0
    assert set(statuses) <= {200, 400, 403}, statuses
    assert statuses.get(200), statuses
    assert_untouched(keys, "b-keypair")


async def test_fifo_in_a_session_is_refused_promptly(cluster: Harness) -> None:
    session = await open_session(cluster)
    await session.run("import os\nos.mkfifo('/home/work/f')\n")

    async def refused() -> None:
        status, body = await kernel_download(cluster, session.id, ["f"])
        assert status == 400 and b"not-a-regular-file" in body, body
        status, prob = await kernel_upload(cluster, session.id, {"f": b"x"})
        assert status == 400 and prob["type"].endswith("not-a-regular-file"), prob

    await asyncio.wait_for(asyncio.gather(*(refused() for _ in range(12))), 30)
    status, listing = await cluster.call("GET", f"/kernel/{session.id}/files",
                                         {"path": "."})
    assert status == 200 and "f" in [e["filename"] for e in orjson.loads(listing["files"])]
    assert await session.run("print(6 * 7)") == "42\n"
