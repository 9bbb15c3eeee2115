"""The confined-file workers really run unprivileged (as the session uid, no groups, no
capabilities), a FIFO never parks one, and a dead worker is replaced."""
from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from common.confined_fs import DIR_FLAGS
from common.confined_pool import ConfinedPool, close_fds
from common.errors import (
    InvalidAPIParameters,
    NotRegularFile,
    PathNotAllowed,
    ServiceUnavailable,
)
from jail.policy import KERNEL_GID, KERNEL_UID

ROOT = os.geteuid() == 0
UID, GID = (KERNEL_UID, KERNEL_GID) if ROOT else (os.getuid(), os.getgid())


@pytest.fixture
async def pool() -> AsyncIterator[ConfinedPool]:
    p = ConfinedPool(KERNEL_UID, KERNEL_GID, size=2)
    await p.start()
    yield p
    await p.close()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A folder owned by the session uid, as the manager creates one."""
    path = tmp_path / "folder"
    path.mkdir()
    os.chown(path, UID, GID)
    return path


async def _call(pool: ConfinedPool, path: Path, op: str, args: dict[str, object]) -> object:
    fd = os.open(path, DIR_FLAGS)
    try:
        return await pool.result(op, args, [fd])
    finally:
        os.close(fd)


async def test_worker_runs_as_the_session_uid(pool: ConfinedPool, folder: Path) -> None:
    uid, euid, gid, egid, groups = await _call(pool, folder, "whoami", {})  # type: ignore[misc]
    assert (uid, euid, gid, egid) == (UID, UID, GID, GID)
    if ROOT:
        assert groups == []
    await _call(pool, folder, "write_files", {"files": [[["a", "b.txt"], b"x"]]})
    for p in (folder / "a", folder / "a" / "b.txt"):
        st = p.stat()
        assert (st.st_uid, st.st_gid) == (UID, GID)


async def test_worker_cannot_read_root_only_files(pool: ConfinedPool, tmp_path: Path) -> None:
    """Even handed a descriptor of a root-owned directory, the worker can read no
    0600 root file in it (a missed check reaches no more than a session can)."""
    if not ROOT:
        pytest.xfail("only meaningful when the tests run as root")
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "key").write_text("secret")
    os.chmod(private / "key", 0o600)
    fd = os.open(private, DIR_FLAGS)
    try:
        with pytest.raises(InvalidAPIParameters) as caught:
            await pool.call("open", {"paths": [["key"]]}, [fd])
        assert "secret" not in str(caught.value)
        with pytest.raises(InvalidAPIParameters):
            await pool.result("write_files", {"files": [[["new"], b"x"]]}, [fd])
    finally:
        os.close(fd)
    assert sorted(os.listdir(private)) == ["key"]


async def test_fifo_does_not_park_a_worker(pool: ConfinedPool, folder: Path) -> None:
    os.mkfifo(folder / "fifo")
    os.chown(folder / "fifo", UID, GID)

    async def hammer() -> None:
        with pytest.raises(NotRegularFile):
            await _call(pool, folder, "open", {"paths": [["fifo"]]})
        with pytest.raises(NotRegularFile):
            await _call(pool, folder, "tar_file", {"path": ["fifo"], "max_bytes": 10})
        with pytest.raises(NotRegularFile):
            await _call(pool, folder, "write_files", {"files": [[["fifo"], b"x"]]})

    await asyncio.wait_for(asyncio.gather(*(hammer() for _ in range(6))), 10)
    listing = await asyncio.wait_for(_call(pool, folder, "list", {"path": []}), 5)
    assert [e["filename"] for e in listing] == ["fifo"]  # type: ignore[attr-defined]


async def test_worker_rechecks_paths(pool: ConfinedPool, folder: Path) -> None:
    for bad in (["..", "x"], ["/etc"], ["a/b"], ["a\x00"], [""]):
        with pytest.raises(PathNotAllowed):
            await _call(pool, folder, "mkdir", {"path": bad})
    with pytest.raises(InvalidAPIParameters):
        await _call(pool, folder, "no-such-op", {})


async def test_dead_worker_is_replaced(pool: ConfinedPool, folder: Path) -> None:
    victims = [w.proc.pid for w in pool._all]
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    for _ in range(2):  # each dead worker fails one request, then is replaced
        with pytest.raises(ServiceUnavailable):
            await _call(pool, folder, "usage", {})

    async def healthy() -> object:
        while True:
            try:
                return await _call(pool, folder, "usage", {})
            except ServiceUnavailable:
                await asyncio.sleep(0.05)

    assert await asyncio.wait_for(healthy(), 20) == [0, 0]
    assert not {w.proc.pid for w in pool._all} & set(victims)


async def test_descriptors_come_back(pool: ConfinedPool, folder: Path) -> None:
    (folder / "f").write_bytes(b"data")
    fd = os.open(folder, DIR_FLAGS)
    try:
        info, fds = await pool.call("open", {"paths": [["f"]]}, [fd])
    finally:
        os.close(fd)
    try:
        assert info == [{"kind": "file", "size": 4}] and os.read(fds[0], 10) == b"data"
    finally:
        close_fds(fds)


async def test_deep_trees_are_counted_and_deleted(pool: ConfinedPool, folder: Path) -> None:
    """A session may nest directories far deeper than PATH_MAX allows to name at once."""
    fd = os.open(folder, DIR_FLAGS)
    try:
        for _ in range(700):
            os.mkdir("d", dir_fd=fd)
            sub = os.open("d", DIR_FLAGS, dir_fd=fd)
            os.fchown(sub, UID, GID)  # as a session would have made it
            os.close(fd)
            fd = sub
        os.close(os.open("leaf", os.O_CREAT | os.O_WRONLY, dir_fd=fd))
    finally:
        os.close(fd)
    assert await _call(pool, folder, "usage", {}) == [1, 0]
    await _call(pool, folder, "remove", {"paths": [["d"]], "recursive": True})
    assert os.listdir(folder) == []
