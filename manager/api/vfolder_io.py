"""Wire formats of the vfolder API: request parameters (JSON body and/or query
string, as the spec and client 18.12.3 send them), multipart uploads streamed into
a staging batch, and downloads as multipart with gzip-encoded parts."""
from __future__ import annotations

import asyncio
import contextlib
import uuid
import zlib
from pathlib import PurePosixPath
from typing import IO, Any
from urllib.parse import unquote

import orjson
from aiohttp import BodyPartReader, hdrs, web
from aiohttp.helpers import content_disposition_header

from common.errors import InvalidAPIParameters, VFolderLimitExceeded
from manager.api.problems import read_json_object
from manager.vfolders.paths import clean_relpath
from manager.vfolders.transfer import TAR_TYPES, Batch, payload_size, stage_tar

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


async def _save_part(part: BodyPartReader, batch: Batch, is_tar: bool) -> Any:
    staged = batch.next_path()
    fp = await asyncio.to_thread(open, staged, "xb")
    raw = 0
    try:
        while chunk := await part.read_chunk(CHUNK):
            raw += len(chunk)
            if is_tar and raw > batch.limits.max_bytes * TAR_SLACK:
                raise VFolderLimitExceeded("the tar archive is larger than the folder limit")
            if not is_tar:
                batch.account(len(chunk))
            await asyncio.to_thread(fp.write, chunk)
    finally:
        await asyncio.to_thread(fp.close)
    return staged


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
            staged = await _save_part(part, batch, is_tar)
            if is_tar:
                await asyncio.to_thread(stage_tar, batch, rel, staged)
            else:
                batch.add_file(rel, staged)
    except (ValueError, AssertionError) as e:  # aiohttp's multipart parse errors
        raise InvalidAPIParameters(f"malformed multipart body: {e}") from None


# ---- downloads -------------------------------------------------------------------------


def _part_head(boundary: str, filename: str) -> bytes:
    disposition = content_disposition_header("attachment", filename=filename)
    return (f"--{boundary}\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Disposition: {disposition}\r\nContent-Encoding: gzip\r\n\r\n").encode()


async def _send_one(resp: web.StreamResponse, fp: IO[bytes]) -> None:
    comp = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
    while chunk := await asyncio.to_thread(fp.read, CHUNK):
        await resp.write(comp.compress(chunk))
    await resp.write(comp.flush() + b"\r\n")


async def send(request: web.Request, payloads: list[tuple[str, IO[bytes]]]
               ) -> web.StreamResponse:
    """One multipart response; each part gzip-encoded, header X-TOTAL-PAYLOADS-LENGTH
    giving the uncompressed total (client 18.12.3 reads both)."""
    try:
        sizes = [await asyncio.to_thread(payload_size, fp) for _, fp in payloads]
        boundary = uuid.uuid4().hex
        resp = web.StreamResponse(status=200, headers={
            hdrs.CONTENT_TYPE: f"multipart/form-data; boundary={boundary}",
            "X-TOTAL-PAYLOADS-LENGTH": str(sum(sizes))})
        await resp.prepare(request)
        for filename, fp in payloads:
            await resp.write(_part_head(boundary, filename))
            await _send_one(resp, fp)
        await resp.write(f"--{boundary}--\r\n".encode())
        await resp.write_eof()
        return resp
    finally:
        for _, fp in payloads:
            with contextlib.suppress(OSError):
                fp.close()
