"""The virtual folder rules: who may do what (owner = ``rd``; ``ro`` < ``rw`` < ``rd``),
limits, and keeping rows and files in step. Handlers call this; it calls ``store``
(rows) and ``storage`` / ``transfer`` (files, in worker threads)."""
from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path, PurePosixPath
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from common.errors import (
    InvalidAPIParameters,
    ServiceUnavailable,
    VFolderAlreadyExists,
    VFolderLimitExceeded,
    VFolderNotFound,
    VFolderPermissionDenied,
)
from manager.config import VFoldersConfig
from manager.db.tables import vfolders
from manager.services.keypairs import KeypairInfo
from manager.vfolders import store, transfer
from manager.vfolders.storage import FolderStorage, Payload
from manager.vfolders.store import Folder, permission_at_least

MIB = 2**20
Feed = Callable[[transfer.Batch], Awaitable[None]]


class VFolderService:
    """One per manager process; stateless beyond its config and engine."""

    def __init__(self, config: VFoldersConfig, engine: AsyncEngine,
                 storage: FolderStorage | None = None) -> None:
        self.config = config
        self._engine = engine
        self._storage = storage  # None: rows and mounts only (the session creator)

    @property
    def storage(self) -> FolderStorage:
        if self._storage is None:
            raise ServiceUnavailable("the virtual folder storage is not running")
        return self._storage

    def path_of(self, folder: Folder) -> Path:
        return Path(os.path.realpath(self.config.host_dir / folder.id.hex))

    def limits(self, folder: Folder) -> transfer.Limits:
        return transfer.Limits(folder.max_files, folder.max_size_mib * MIB)

    async def visible(self, who: KeypairInfo) -> list[Folder]:
        async with self._engine.connect() as conn:
            return await store.visible(conn, who.access_key)

    async def get(self, who: KeypairInfo, name: str, need: str = "ro") -> Folder:
        async with self._engine.connect() as conn:
            folder = await store.resolve(conn, who.access_key, name)
        if not permission_at_least(folder.permission, need):
            raise VFolderPermissionDenied(
                f"{need!r} is needed on {name!r}; you have {folder.permission!r}")
        return folder

    async def create(self, who: KeypairInfo, name: str, host: str | None, *,
                     max_bytes: int | None = None, max_files: int | None = None) -> Folder:
        """A new folder; ``max_bytes`` / ``max_files`` replace the configured limits
        (the job API's ``atlas`` folder is larger than a user's)."""
        if host not in (None, self.config.host):
            raise InvalidAPIParameters(f"unknown vfolder host {host!r}; "
                                       f"this cluster offers {self.config.host!r}")
        folder_id = uuid.uuid4()
        try:
            async with self._engine.begin() as conn:
                await self._admit_create(conn, who, name)
                await store.insert(conn, {
                    "id": folder_id, "host": self.config.host, "name": name,
                    "owner": who.access_key, "max_files": max_files or self.config.max_files,
                    "max_size": max((max_bytes or self.config.max_size_bytes) // MIB, 1)})
                folder = await store.resolve(conn, who.access_key, name)
                await self.storage.create(folder.id)
        except IntegrityError:
            raise VFolderAlreadyExists(f"you already have a folder named {name!r}") from None
        return folder

    async def _admit_create(self, conn: Any, who: KeypairInfo, name: str) -> None:
        await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(
            sa.func.hashtext("vfolders:" + who.access_key))))
        if await store.count_owned(conn, who.access_key) >= self.config.max_folders:
            raise VFolderLimitExceeded(
                f"you already own {self.config.max_folders} folders, the limit")
        try:
            await store.resolve(conn, who.access_key, name)
        except VFolderNotFound:
            return
        raise VFolderAlreadyExists(f"a folder named {name!r} is already visible to you")

    async def info(self, who: KeypairInfo, name: str) -> Folder:
        folder = await self.get(who, name)
        files, size = await self.storage.usage(folder.id)
        async with self._engine.begin() as conn:
            await store.set_usage(conn, folder.id, files, size)
            return await store.resolve(conn, who.access_key, name)

    async def delete(self, who: KeypairInfo, name: str) -> None:
        folder = await self.get(who, name)
        if not folder.is_owner:
            raise VFolderPermissionDenied("only the owner can delete a folder")
        async with self._engine.begin() as conn:
            await store.delete(conn, folder.id)
            await self.storage.remove(folder.id)

    async def list_files(self, who: KeypairInfo, name: str, rel: PurePosixPath
                         ) -> list[dict[str, Any]]:
        folder = await self.get(who, name)
        return await self.storage.list_dir(folder.id, rel)

    async def mkdir(self, who: KeypairInfo, name: str, rel: PurePosixPath) -> None:
        folder = await self.get(who, name, "rw")
        await self.storage.make_dir(folder.id, rel)

    async def delete_files(self, who: KeypairInfo, name: str, rels: list[PurePosixPath],
                           recursive: bool) -> None:
        folder = await self.get(who, name, "rd")
        await self.storage.delete(folder.id, rels, recursive)
        await self._refresh_usage(folder)

    async def _refresh_usage(self, folder: Folder) -> None:
        files, size = await self.storage.usage(folder.id)
        async with self._engine.begin() as conn:
            await store.set_usage(conn, folder.id, files, size)

    async def upload(self, who: KeypairInfo, name: str, feed: Feed) -> int:
        """Stage what ``feed`` writes, then commit it all or nothing; returns #files."""
        folder = await self.get(who, name, "rw")
        async with self.storage.staging() as stage:
            batch = transfer.Batch(self.storage, stage, self.limits(folder))
            await feed(batch)
            if not batch.files and not batch.dirs:
                raise InvalidAPIParameters("the upload holds no files")
            await self._commit(folder, batch)
            return len(batch.files)

    async def _commit(self, folder: Folder, batch: transfer.Batch) -> None:
        """Under the folder row's lock, one commit per folder at a time; the worker
        rescans the folder (sessions may have written to it) and checks the limits."""
        files, dirs = batch.commit_args()
        async with self._engine.begin() as conn:
            await conn.execute(sa.select(vfolders.c.id).where(vfolders.c.id == folder.id)
                               .with_for_update())
            after = await self.storage.commit(folder.id, batch.stage, files, dirs,
                                              batch.limits.max_files, batch.limits.max_bytes)
            await store.set_usage(conn, folder.id, *after)

    async def resolve_mounts(self, who: KeypairInfo, mounts: list[tuple[str, str]]
                             ) -> list[dict[str, str]]:
        """Creation-config mounts → CreateKernel.mounts (``ro`` stays read-only)."""
        out = []
        for name, target in mounts:
            folder = await self.get(who, name)
            path = self.path_of(folder)
            if not await asyncio.to_thread(path.is_dir):
                raise VFolderNotFound(f"the storage of folder {name!r} is missing")
            out.append({"host_path": str(path), "target": target,
                        "mode": "ro" if folder.permission == "ro" else "rw"})
        return out

    async def open_download(self, who: KeypairInfo, name: str, rels: list[PurePosixPath]
                            ) -> tuple[list[Payload], int]:
        """The opened payloads and the most apparent bytes they may hold (the smaller
        of the folder's size limit and ``max_download``); the caller closes them."""
        folder = await self.get(who, name)
        payloads = await self.storage.open_payloads(folder.id, rels)
        return payloads, min(self.limits(folder).max_bytes, self.config.max_download_bytes)
