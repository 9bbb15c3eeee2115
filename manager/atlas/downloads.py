"""Downloads of a job's files: the result for a code (seed 000 §4.2) and the metadata
archives (§4.6). Files are streamed from the descriptors the confined-file workers
open; archives are written to a temporary file in a worker thread, then streamed (never
held in memory)."""
from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tarfile
import tempfile
import time
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from aiohttp import web

CHUNK = 256 * 1024
CONTENT_TYPES = {
    "ply": "application/octet-stream", "glb": "model/gltf-binary", "obj": "model/obj",
    "gif": "image/gif", "png": "image/png", "zip": "application/zip",
    "tar.gz": "application/gzip", "txt": "text/plain; charset=utf-8",
    "mp4": "video/mp4",
}
UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")
MAX_STEM = 120


def extension(filename: str) -> str:
    name = PurePosixPath(filename).name.lower()
    if name.endswith(".tar.gz"):
        return "tar.gz"
    return name.rsplit(".", 1)[-1] if "." in name else "bin"


def content_type(ext: str) -> str:
    return CONTENT_TYPES.get(ext, "application/octet-stream")


def safe_filename(item_name: str, ext: str) -> str:
    """``<itemName>.<ext>`` reduced to characters safe in any header and file system:
    anything else becomes ``_``; no leading dots; never empty."""
    stem = UNSAFE.sub("_", item_name).strip(" .")[:MAX_STEM].strip(" .")
    return f"{stem if stem.strip('_ ') else 'item'}.{ext}"


def attachment(filename: str) -> str:
    """The header for a name made by :func:`safe_filename` (or a fixed one): such a name
    holds no quote, backslash or control character, so it is quoted as it is."""
    if UNSAFE.search(filename):
        raise ValueError("not a safe file name")
    return f'attachment; filename="{filename}"'


@dataclass(frozen=True, slots=True)
class Member:
    arcname: str
    fd: int
    size: int


def _read(fd: int) -> bytes:
    return os.read(fd, CHUNK)


async def stream_fd(request: web.Request, fd: int, size: int, filename: str,
                    ctype: str) -> web.StreamResponse:
    """Send ``size`` bytes of an open file; the caller closes ``fd``."""
    resp = web.StreamResponse(headers={"Content-Type": ctype, "Cache-Control": "no-cache",
                                       "Content-Disposition": attachment(filename)})
    resp.content_length = size
    await resp.prepare(request)
    sent = 0
    while sent < size and (chunk := await asyncio.to_thread(_read, fd)):
        chunk = chunk[:size - sent]
        sent += len(chunk)
        await resp.write(chunk)
    await resp.write_eof()
    return resp


def _write_archive(path: Path, kind: str, members: list[Member]) -> None:
    now = time.time()
    if kind == "zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for m in members:
                with os.fdopen(os.dup(m.fd), "rb") as src, zf.open(m.arcname, "w") as dst:
                    while chunk := src.read(CHUNK):
                        dst.write(chunk)
        return
    with tarfile.open(path, "w:gz") as tf:
        for m in members:
            info = tarfile.TarInfo(m.arcname)
            info.size, info.mtime, info.mode = m.size, int(now), 0o644
            with os.fdopen(os.dup(m.fd), "rb") as src:
                tf.addfile(info, src)


@contextlib.asynccontextmanager
async def archive(kind: str, members: list[Member]) -> AsyncIterator[tuple[int, int]]:
    """A temporary ``zip`` or ``tar.gz`` of ``members``: (descriptor, size); removed
    when the block ends."""
    fd, name = tempfile.mkstemp(prefix="atlas-archive-")
    try:
        await asyncio.to_thread(_write_archive, Path(name), kind, members)
        yield fd, os.fstat(fd).st_size
    finally:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
