"""The issue 7 attacks on virtual folders, performed by a real session that mounts the
folder read-write and swaps ``p`` (a directory) with ``q`` (a symlink to a host
directory) in a renameat2(RENAME_EXCHANGE) loop while the REST API is hammered.
On the old main (realpath check, then use by name) each of these reached the host."""
from __future__ import annotations

import asyncio
import io
import os
import tarfile
from pathlib import Path

import pytest

from manager.api.keys import CONFIG
from tests.integration.confinement.conftest import (
    SECRET,
    Harness,
    Session,
    assert_untouched,
    canary,
    download,
    folder_dir,
    hammer,
    open_session,
    upload,
    wait_swapping,
)

pytestmark = pytest.mark.integration


async def _folder_session(h: Harness) -> tuple[Session, Path]:
    status, created = await h.call("POST", "/folders", {"name": "d"})
    assert status == 201, created
    root = folder_dir(h.app[CONFIG].vfolders.root, created["id"])
    return await open_session(h, mounts=["d"]), root




async def test_upload_race_writes_nothing_outside(cluster: Harness, tmp_path: Path) -> None:
    keys = canary(tmp_path, "admin.key")
    session, root = await _folder_session(cluster)
    await session.start_swap("/home/work/d", keys)
    await wait_swapping(root / ".swapping")

    parts = {f"p/x{i}": b"pwned" for i in range(16)} | {"p/sub/y": b"pwned"}

    async def attempt() -> int:
        return (await upload(cluster, "d", parts))[0]

    statuses = await hammer(attempt)
    assert_untouched(keys, "admin.key")
    assert set(statuses) <= {201, 400}, statuses
    assert statuses.get(201), statuses  # the race was really run, not refused outright


async def test_delete_race_removes_nothing_outside(cluster: Harness, tmp_path: Path) -> None:
    keys = canary(tmp_path, "victim")
    session, root = await _folder_session(cluster)
    await session.start_swap("/home/work/d", keys, "victim")
    await wait_swapping(root / ".swapping")

    async def attempt() -> int:
        status, _ = await cluster.call("DELETE", "/folders/d/delete_files",
                                       {"files": ["p/victim"]})
        return status

    statuses = await hammer(attempt)
    assert_untouched(keys, "victim")
    assert set(statuses) <= {200, 400, 404}, statuses
    assert statuses.get(200), statuses


async def test_directory_download_race_returns_nothing_outside(
        cluster: Harness, tmp_path: Path) -> None:
    """A large sparse file first in the directory widens the window between the
    listing and the reads; the host directory holds files of the same names."""
    keys = canary(tmp_path, "b-keypair", "c-join-token")
    session, root = await _folder_session(cluster)
    await session.run("import os\nos.makedirs('/home/work/d/p')\n"
                      "with open('/home/work/d/p/a-big', 'wb') as f:\n"
                      "    f.truncate(32 << 20)\n")
    await session.start_swap("/home/work/d", keys, "b-keypair", "c-join-token")
    await wait_swapping(root / ".swapping")
    leaked: list[str] = []

    async def attempt() -> int:
        status, got = await download(cluster, "d", ["p"])
        if status == 200:
            with tarfile.open(fileobj=io.BytesIO(got["p.tar"])) as tar:
                for member in tar.getmembers():
                    data = tar.extractfile(member).read() if member.isfile() else b""
                    if SECRET.encode() in data:
                        leaked.append(member.name)
        return status

    statuses = await hammer(attempt)
    assert not leaked
    assert set(statuses) <= {200, 400}, statuses
    assert statuses.get(200), statuses
    assert_untouched(keys, "b-keypair", "c-join-token")


async def test_fifo_in_a_folder_is_refused_promptly(cluster: Harness) -> None:
    session, root = await _folder_session(cluster)
    await session.run("import os\nos.mkfifo('/home/work/d/f')\nos.mkdir('/home/work/d/dir')\n"
                      "os.mkfifo('/home/work/d/dir/g')\n"
                      "open('/home/work/d/dir/ok.txt', 'w').write('ok')\n")

    async def refused() -> None:
        status, prob = await download(cluster, "d", ["f"])
        assert status == 400 and prob["type"].endswith("not-a-regular-file"), prob

    await asyncio.wait_for(asyncio.gather(*(refused() for _ in range(8))), 20)
    status, got = await asyncio.wait_for(download(cluster, "d", ["dir"]), 20)
    assert status == 200  # the FIFO inside is left out, never opened
    with tarfile.open(fileobj=io.BytesIO(got["dir.tar"])) as tar:
        assert sorted(tar.getnames()) == ["dir", "dir/ok.txt"]
    status, _ = await asyncio.wait_for(upload(cluster, "d", {"f": b"replaces the fifo"}), 20)
    assert status == 201
    assert (root / "f").read_bytes() == b"replaces the fifo"
    status, _ = await cluster.call("GET", "/folders/d/files")
    assert status == 200
    assert os.path.exists(root / "dir" / "g")  # noqa: ASYNC240
