"""``/kernel/:id/{upload,files,download,logs}`` (seed 004 §2.14 batch-mode files).

Shapes follow client 18.12.3: upload is multipart with parts named ``src`` whose
filenames may hold directories; ``files`` answers ``{"files": <JSON text>,
"abspath", "errors"}``; ``download`` answers multipart/mixed with one tar archive
per file; ``logs`` answers ``{"result": {"logs": <text>}}``.
"""
from __future__ import annotations

from typing import Any

import orjson
from aiohttp import BodyPartReader, MultipartWriter, web

from common.errors import InvalidAPIParameters, PayloadTooLarge
from common.limits import MAX_DOWNLOAD_FILES, MAX_UPLOAD_BYTES, MAX_UPLOAD_FILES
from manager.api.auth import caller
from manager.api.keys import FILES
from manager.api.multipart import malformed_multipart, part_filename
from manager.api.problems import json_response, read_json_object
from manager.api.version import PREFIXES

CHUNK = 64 * 1024
MAX_PATH = 4096


async def _read_part(part: BodyPartReader, name: str) -> bytes:
    data = bytearray()
    while chunk := await part.read_chunk(CHUNK):
        data += chunk
        if len(data) > MAX_UPLOAD_BYTES:
            raise PayloadTooLarge(f"{name!r} is larger than {MAX_UPLOAD_BYTES} bytes "
                                  "(the per-file upload limit)")
    return bytes(data)


async def read_uploads(request: web.Request) -> list[tuple[str, bytes]]:
    """(filename, content) of every file part; limits checked while streaming."""
    if not request.content_type.startswith("multipart/"):
        raise InvalidAPIParameters("upload expects a multipart/form-data body")
    files: list[tuple[str, bytes]] = []
    with malformed_multipart():
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise InvalidAPIParameters("nested multipart bodies are not supported")
            name = part_filename(part)
            if not name or len(name) > MAX_PATH:
                raise InvalidAPIParameters("every part needs a filename (at most "
                                           f"{MAX_PATH} characters)")
            if len(files) >= MAX_UPLOAD_FILES:
                raise InvalidAPIParameters(f"at most {MAX_UPLOAD_FILES} files per upload")
            files.append((name, await _read_part(part, name)))
    if not files:
        raise InvalidAPIParameters("no files in the upload")
    return files


async def upload(request: web.Request) -> web.Response:
    files = await read_uploads(request)
    await request.app[FILES].upload(caller(request), request.match_info["id"], files)
    return web.Response(status=204)


def _path_of(body: dict[str, Any], request: web.Request) -> str:
    path = body.get("path", request.query.get("path", "."))
    if not isinstance(path, str) or len(path) > MAX_PATH:
        raise InvalidAPIParameters(f"'path' must be a string of at most {MAX_PATH} characters")
    return path or "."


async def list_files(request: web.Request) -> web.Response:
    path = _path_of(await read_json_object(request), request)
    abspath, entries = await request.app[FILES].list_files(
        caller(request), request.match_info["id"], path)
    return json_response({"files": orjson.dumps(entries).decode(), "abspath": abspath,
                          "errors": ""})


def _file_names(body: dict[str, Any]) -> list[str]:
    files = body.get("files")
    if not isinstance(files, list) or not all(isinstance(f, str) and f for f in files):
        raise InvalidAPIParameters("'files' must be a list of file paths")
    if not 1 <= len(files) <= MAX_DOWNLOAD_FILES:
        raise InvalidAPIParameters(f"download 1 to {MAX_DOWNLOAD_FILES} files at a time")
    if any(len(f) > MAX_PATH for f in files):
        raise InvalidAPIParameters(f"a path is longer than {MAX_PATH} characters")
    return files


async def download(request: web.Request) -> web.Response:
    files = _file_names(await read_json_object(request))
    archives = await request.app[FILES].download(caller(request), request.match_info["id"],
                                                 files)
    writer = MultipartWriter("mixed")
    for archive in archives:
        writer.append(archive, {"Content-Type": "application/x-tar"})
    return web.Response(body=writer, status=200)


async def logs(request: web.Request) -> web.Response:
    text = await request.app[FILES].logs(caller(request), request.match_info["id"])
    return json_response({"result": {"logs": text}})


def add_routes(app: web.Application) -> None:
    for prefix in PREFIXES:
        r = app.router
        r.add_post(f"{prefix}/kernel/{{id}}/upload", upload)
        r.add_get(f"{prefix}/kernel/{{id}}/files", list_files)
        r.add_get(f"{prefix}/kernel/{{id}}/download", download)
        r.add_get(f"{prefix}/kernel/{{id}}/logs", logs)
