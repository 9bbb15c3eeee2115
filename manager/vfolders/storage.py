"""The files of virtual folders on the manager's disk: ``<root>/<host>/<id hex>``.

The manager (root) handles only paths of its own here: a folder's top directory and
the upload staging directories ``<root>/<host>/.staging/<random>``. It never opens
anything inside them by name: it opens the directory and hands its descriptor to the
confined-file worker pool (``common.confined_pool``), whose workers run as the
session uid and resolve every user path below that descriptor
(``common.confined_fs``). Worker errors are translated into the vfolder vocabulary.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from common.confined_fs import DIR_FLAGS
from common.confined_pool import ConfinedPool, close_fds
from common.errors import (
    PathNotAllowed,
    PathNotFound,
    ResourceLimitExceeded,
    VFolderLimitExceeded,
    VFolderNotFound,
    VFolderPathNotAllowed,
    VFolderPathNotFound,
)
from manager.vfolders.paths import parts_of

log = logging.getLogger(__name__)
STAGING = ".staging"  # under <root>/<host>/; folder dirs are hex ids, so no clash
TRANSLATE = {PathNotAllowed: VFolderPathNotAllowed, PathNotFound: VFolderPathNotFound,
             ResourceLimitExceeded: VFolderLimitExceeded}


@dataclass(frozen=True, slots=True)
class Payload:
    """One part of a download: an open regular file, or a pipe streaming a tar."""

    filename: str
    fd: int
    size: int  # bytes that will be read from ``fd``
    apparent: int  # apparent bytes of the files in it (what limits count)
    pipe: bool  # a tar streamed by a worker's child (read without a thread)


@dataclass(frozen=True, slots=True)
class Stage:
    """A staging directory of one upload, open."""

    path: Path
    fd: int


def _create_top(path: Path, uid: int, gid: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.mkdir(mode=0o755)
    fd = os.open(path, DIR_FLAGS)
    try:
        if os.geteuid() == 0:
            os.fchown(fd, uid, gid)
    finally:
        os.close(fd)


def _make_stage(host_dir: Path, uid: int, gid: int) -> Stage:
    base = host_dir / STAGING
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = base / uuid.uuid4().hex
    path.mkdir(mode=0o700)
    fd = os.open(path, DIR_FLAGS)
    if os.geteuid() == 0:
        os.fchown(fd, uid, gid)
    return Stage(path, fd)


def _open_top(path: Path) -> int:
    try:
        return os.open(path, DIR_FLAGS)
    except FileNotFoundError:
        raise VFolderNotFound("the storage of this folder is missing") from None


class FolderStorage:
    """Folder contents, through the worker pool (one per manager process)."""

    def __init__(self, host_dir: Path, pool: ConfinedPool) -> None:
        self.host_dir = host_dir
        self.pool = pool

    def path(self, folder_id: uuid.UUID) -> Path:
        return self.host_dir / folder_id.hex

    async def create(self, folder_id: uuid.UUID) -> None:
        await asyncio.to_thread(_create_top, self.path(folder_id), self.pool.uid, self.pool.gid)

    @contextlib.asynccontextmanager
    async def opened(self, folder_id: uuid.UUID) -> AsyncIterator[int]:
        fd = _open_top(self.path(folder_id))
        try:
            yield fd
        finally:
            os.close(fd)

    async def _call(self, folder_id: uuid.UUID, op: str, args: dict[str, Any]) -> Any:
        async with self.opened(folder_id) as fd:
            return await self.pool.result(op, args, [fd])

    async def remove(self, folder_id: uuid.UUID) -> None:
        """Empty the folder through a worker, then remove its (empty) top directory."""
        try:
            await self._call(folder_id, "clear", {})
            os.rmdir(self.path(folder_id))
        except (VFolderNotFound, FileNotFoundError):
            pass
        except OSError as e:
            log.warning("folder %s was not removed completely: %s", folder_id.hex, e)

    async def usage(self, folder_id: uuid.UUID) -> tuple[int, int]:
        count, size = await self._call(folder_id, "usage", {})
        return int(count), int(size)

    async def list_dir(self, folder_id: uuid.UUID, rel: PurePosixPath) -> list[dict[str, Any]]:
        return list(await self._call(folder_id, "list", {"path": parts_of(rel)}))

    async def make_dir(self, folder_id: uuid.UUID, rel: PurePosixPath) -> None:
        await self._call(folder_id, "mkdir", {"path": parts_of(rel)})

    async def delete(self, folder_id: uuid.UUID, rels: list[PurePosixPath],
                     recursive: bool) -> None:
        await self._call(folder_id, "remove", {"paths": [parts_of(r) for r in rels],
                                               "recursive": recursive})

    async def open_payloads(self, folder_id: uuid.UUID, rels: list[PurePosixPath]
                            ) -> list[Payload]:
        """Per path a regular file, or a directory as ``<name>.tar``; all are opened
        (and checked) before any is returned. The caller closes the descriptors."""
        if any(not parts_of(r) for r in rels):
            raise VFolderPathNotAllowed("name a file or directory to download, not the root")
        async with self.opened(folder_id) as fd:
            info, fds = await self.pool.call("open", {"paths": [parts_of(r) for r in rels]},
                                             [fd])
        if len(info) != len(rels) or len(fds) != len(rels):
            close_fds(fds)
            raise VFolderPathNotAllowed("the file worker answered a different request")
        return [Payload(r.name + (".tar" if i["kind"] == "tar" else ""), f, int(i["size"]),
                        int(i.get("data_size", i["size"])), i["kind"] == "tar")
                for r, i, f in zip(rels, info, fds, strict=True)]

    # ---- uploads -------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def staging(self) -> AsyncIterator[Stage]:
        """A fresh staging directory owned by the session uid; emptied and removed after."""
        stage = await asyncio.to_thread(_make_stage, self.host_dir, self.pool.uid,
                                        self.pool.gid)
        try:
            yield stage
        finally:
            try:
                await self.pool.result("clear", {}, [stage.fd])
            finally:
                os.close(stage.fd)
                with contextlib.suppress(OSError):
                    os.rmdir(stage.path)

    async def new_file(self, stage: Stage, name: str) -> int:
        """A new file in ``stage`` created by a worker (so the session uid owns it),
        open for writing."""
        _, fds = await self.pool.call("create", {"path": [name]}, [stage.fd])
        if len(fds) != 1:
            close_fds(fds)
            raise VFolderPathNotAllowed("the file worker created no file")
        return fds[0]

    async def unpack(self, stage: Stage, archive: int, dest: str, max_files: int,
                     max_bytes: int) -> tuple[list[list[str]], list[list[str]]]:
        """Extract a staged tar into ``stage/dest``: (files, dirs) as component lists."""
        out = await self.pool.result("unpack", {"dest": [dest], "max_files": max_files,
                                                "max_bytes": max_bytes}, [stage.fd, archive])
        return out["files"], out["dirs"]

    async def commit(self, folder_id: uuid.UUID, stage: Stage, files: list[list[Any]],
                     dirs: list[list[str]], max_files: int, max_bytes: int) -> tuple[int, int]:
        """Move staged files (``[dest, staged]`` component lists) into the folder if
        the result fits the limits; returns the folder's (files, bytes) afterwards."""
        async with self.opened(folder_id) as fd:
            count, size = await self.pool.result(
                "commit", {"files": files, "dirs": dirs, "max_files": max_files,
                           "max_bytes": max_bytes}, [fd, stage.fd])
        return int(count), int(size)
