"""The job directories in the account's ``atlas`` folder (docs/atlas.md, the contract):
written, read and removed only through the virtual folder service, whose confined-file
workers resolve every path below the folder (never raw paths)."""
from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath

import orjson

from common.confined_pool import close_fds
from common.errors import NotFound, VFolderAlreadyExists, VFolderNotFound, VFolderPathNotFound
from common.slots import parse_bytes
from kernels.models import jobfiles as names
from manager.config import AtlasJobsConfig
from manager.services.keypairs import KeypairInfo
from manager.vfolders import transfer
from manager.vfolders.service import VFolderService
from manager.vfolders.storage import Payload

FOLDER = "atlas"
MOUNT = "/home/work/atlas"
CHUNK = 1024 * 1024
MAX_SMALL = 8 * 2**20  # request.json, result.json, progress.jsonl are read whole


def job_dir(job_id: str) -> PurePosixPath:
    return PurePosixPath("jobs", job_id)


def _copy(src: Path, fd: int) -> int:
    total = 0
    with open(src, "rb") as f:
        while chunk := f.read(CHUNK):
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]
            total += len(chunk)
    return total


def _read_fd(fd: int, cap: int) -> bytes:
    data = bytearray()
    while chunk := os.read(fd, CHUNK):
        data.extend(chunk)
        if len(data) > cap:
            raise NotFound("the job file is larger than the manager reads")
    return bytes(data)


class JobFiles:
    def __init__(self, service: VFolderService, config: AtlasJobsConfig) -> None:
        self.service = service
        self.config = config

    async def ensure_folder(self, owner: KeypairInfo) -> None:
        """The owner's ``atlas`` folder, created on first use (two at once: one wins)."""
        try:
            await self.service.get(owner, FOLDER, "rw")
            return
        except VFolderNotFound:
            pass
        with contextlib.suppress(VFolderAlreadyExists):
            await self.service.create(owner, FOLDER, None,
                                      max_bytes=parse_bytes(self.config.folder_max_size),
                                      max_files=self.config.folder_max_files)

    async def write_job(self, owner: KeypairInfo, job_id: str, video: Path, input_name: str,
                        request: dict[str, object]) -> None:
        """``jobs/<id>/input/<name>`` and ``jobs/<id>/request.json``, all or nothing."""
        base = job_dir(job_id)

        async def feed(batch: transfer.Batch) -> None:
            name, fd = await batch.new_part()
            try:
                batch.account(await asyncio.to_thread(_copy, video, fd))
            finally:
                os.close(fd)
            batch.add_file(base / names.INPUT_DIR / input_name, [name])
            name, fd = await batch.new_part()
            try:
                data = orjson.dumps(request, option=orjson.OPT_INDENT_2)
                await asyncio.to_thread(os.write, fd, data)
                batch.account(len(data))
            finally:
                os.close(fd)
            batch.add_file(base / names.REQUEST, [name])
            batch.dirs.add(base / names.OUTPUTS)

        await self.service.upload(owner, FOLDER, feed)

    async def remove_job(self, owner: KeypairInfo, job_id: str) -> None:
        """The whole job directory; gone already (or no folder) is fine."""
        with contextlib.suppress(VFolderNotFound, VFolderPathNotFound):
            await self.service.delete_files(owner, FOLDER, [job_dir(job_id)], recursive=True)

    @contextlib.asynccontextmanager
    async def open(self, owner: KeypairInfo, job_id: str, rel: str
                   ) -> AsyncIterator[Payload]:
        """One file (or a directory as a tar stream) of the job, open; 404 if absent."""
        try:
            payloads, _ = await self.service.open_download(owner, FOLDER,
                                                           [job_dir(job_id) / rel])
        except (VFolderNotFound, VFolderPathNotFound):
            raise NotFound(f"the job has no {rel}") from None
        try:
            yield payloads[0]
        finally:
            close_fds([p.fd for p in payloads])

    async def read(self, owner: KeypairInfo, job_id: str, rel: str) -> bytes | None:
        """A small job file's bytes, or None when it does not exist (yet)."""
        try:
            async with self.open(owner, job_id, rel) as payload:
                return await asyncio.to_thread(_read_fd, payload.fd, MAX_SMALL)
        except NotFound:
            return None
