"""Wire formats of the vfolder API: request parameters (JSON body and/or query
string, as the spec and client 18.12.3 send them), multipart uploads streamed into
a staging batch, and downloads as multipart with gzip-encoded parts."""
from __future__ import annotations

import asyncio
import os
import uuid
import zlib
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote

import orjson
from aiohttp import BodyPartReader, hdrs, web
from aiohttp.helpers import content_disposition_header

from common.confined_pool import close_fds
from common.errors import InvalidAPIParameters, VFolderLimitExceeded
from manager.api.multipart import MULTIPART_ERRORS
from manager.api.problems import read_json_object
from manager.vfolders.paths import clean_relpath
from manager.vfolders.storage import Payload
from manager.vfolders.transfer import TAR_TYPES, Batch

CHUNK = 256 * 1024
MAX_PATHS = 1000
TAR_SLACK = 2  # a tar archive may be this many times its payload (headers, padding)


async def params(request: web.Request) -> dict[str, Any]:
    """JSON body fields, with query-string fields filling in what the body lacks."""
    body = await read_json_object(request)
    for key in request.query:
        values = request.query.getall(key)
        body.setdefault(key, values if key == "files" else values[-1])
    return body


def paths_param(body: dict[str, Any], key: str = "files") -> list[PurePosixPath]:
    value = body.get(key)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise InvalidAPIParameters(f"'{key}' must be a non-empty list of paths")
    if len(value) > MAX_PATHS:
        raise InvalidAPIParameters(f"'{key}' may list at most {MAX_PATHS} paths")
    return [clean_relpath(v, what=key) for v in value]


def bool_param(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if isinstance(value, str) and value.lower() in ("true", "1", "false", "0", ""):
        return value.lower() in ("true", "1")
    if not isinstance(value, bool) and value is not None:
        raise InvalidAPIParameters(f"'{key}' must be a boolean")
    return bool(value)


def paging_param(body: dict[str, Any]) -> tuple[int, int] | None:
    """(size, index) when the caller asked for §2.9.1 paging, else None."""
    paging = body.get("paging")
    if isinstance(paging, str):
        try:
            paging = orjson.loads(paging)
        except orjson.JSONDecodeError:
            raise InvalidAPIParameters("'paging' must be a Paging Query Object") from None
    if paging is None:
        return None
    if not isinstance(paging, dict):
        raise InvalidAPIParameters("'paging' must be an object")
    size, index = paging.get("size", 0), paging.get("index", 0)
    for key, v in (("size", size), ("index", index)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise InvalidAPIParameters(f"'paging.{key}' must be a non-negative integer")
    return size, index


def page(items: list[Any], paging: tuple[int, int]) -> dict[str, Any]:
    size, index = paging
    if size == 0:
        return {"paging": {"pages": 1 if items else 0, "count": len(items)}, "items": items}
    pages = (len(items) + size - 1) // size
    return {"paging": {"pages": pages, "count": len(items)},
            "items": items[index * size:(index + 1) * size]}


# ---- uploads ---------------------------------------------------------------------------


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


async def _save_part(part: BodyPartReader, batch: Batch, is_tar: bool) -> tuple[str, int]:
    """Stream a part into a new staged file; (staged name, its open descriptor)."""
    name, fd = await batch.new_part()
    raw = 0
    try:
        while chunk := await part.read_chunk(CHUNK):
            raw += len(chunk)
            if is_tar and raw > batch.limits.max_bytes * TAR_SLACK:
                raise VFolderLimitExceeded("the tar archive is larger than the folder limit")
            if not is_tar:
                batch.account(len(chunk))
            await asyncio.to_thread(_write_all, fd, chunk)
    except BaseException:
        os.close(fd)
        raise
    return name, fd


async def receive(request: web.Request, batch: Batch) -> None:
    """Stream every file part into ``batch``; a tar part (Content-Type
    application/x-tar) is unpacked into the directory its filename names."""
    if not request.content_type.startswith("multipart/"):
        raise InvalidAPIParameters("upload with a multipart/form-data body")
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or not part.filename:
                raise InvalidAPIParameters("every part of an upload must be a file")
            is_tar = (part.headers.get(hdrs.CONTENT_TYPE, "").split(";")[0].strip()
                      in TAR_TYPES)
            # aiohttp clients percent-quote filenames ("a%2Fb.txt"); decode, then check
            rel = clean_relpath(unquote(part.filename), allow_root=is_tar, what="filename")
            name, fd = await _save_part(part, batch, is_tar)
            try:
                if is_tar:
                    await batch.add_tar(rel, fd)
                else:
                    batch.add_file(rel, [name])
            finally:
                os.close(fd)
    except MULTIPART_ERRORS as e:  # aiohttp's multipart parse errors
        raise InvalidAPIParameters(f"malformed multipart body: {e}") from None


# ---- downloads -------------------------------------------------------------------------


def _part_head(boundary: str, filename: str) -> bytes:
    disposition = content_disposition_header("attachment", filename=filename)
    return (f"--{boundary}\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Disposition: {disposition}\r\nContent-Encoding: gzip\r\n\r\n").encode()


def _wake(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


async def _read_pipe(fd: int, n: int) -> bytes:
    """Up to ``n`` bytes from a non-blocking pipe, waiting in the event loop (no thread
    is parked on a slow producer)."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            return os.read(fd, n)
        except BlockingIOError:
            pass
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_reader(fd, _wake, ready)
        try:
            await ready
        finally:
            loop.remove_reader(fd)


async def _read(payload: Payload, n: int) -> bytes:
    if payload.pipe:
        return await _read_pipe(payload.fd, n)
    return await asyncio.to_thread(os.read, payload.fd, n)


async def _send_one(resp: web.StreamResponse, payload: Payload) -> None:
    """The payload's bytes, gzip-encoded; exactly ``payload.size`` of them are read."""
    comp = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
    left = payload.size
    if payload.pipe:
        os.set_blocking(payload.fd, False)
    while left > 0:
        chunk = await _read(payload, min(CHUNK, left))
        if not chunk:  # a file shrank while we sent it: keep the announced length
            chunk = bytes(min(CHUNK, left))
        left -= len(chunk)
        await resp.write(comp.compress(chunk))
    await resp.write(comp.flush() + b"\r\n")


def check_download(payloads: list[Payload], cap: int) -> None:
    """Refuse, before a byte is sent, a download whose files add up to more than ``cap``
    apparent bytes (a sparse file counts at its full size)."""
    apparent = sum(p.apparent for p in payloads)
    if apparent > cap:
        raise VFolderLimitExceeded(f"the download holds {apparent} bytes; at most {cap} "
                                   "can be downloaded at once")


async def send(request: web.Request, payloads: list[Payload]) -> web.StreamResponse:
    """One multipart response; each part gzip-encoded, header X-TOTAL-PAYLOADS-LENGTH
    giving the uncompressed total (client 18.12.3 reads both). Closes the payloads."""
    try:
        boundary = uuid.uuid4().hex
        resp = web.StreamResponse(status=200, headers={
            hdrs.CONTENT_TYPE: f"multipart/form-data; boundary={boundary}",
            "X-TOTAL-PAYLOADS-LENGTH": str(sum(p.size for p in payloads))})
        await resp.prepare(request)
        for payload in payloads:
            await resp.write(_part_head(boundary, payload.filename))
            await _send_one(resp, payload)
        await resp.write(f"--{boundary}--\r\n".encode())
        await resp.write_eof()
        return resp
    finally:
        close_fds([p.fd for p in payloads])
