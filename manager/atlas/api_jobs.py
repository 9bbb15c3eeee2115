"""The job routes of seeds 000 (§3-§4 and its tutorial) and 001 (history, interrupt),
each under ``/atlas/`` and ``/krako/``. Every error is the usual problem JSON plus the
seed's ``message`` member."""
from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import BodyPartReader, web

from common.errors import BadJobRequest, KrakenError, NotFound
from kernels.models import jobfiles as names
from manager.api.multipart import malformed_multipart
from manager.api.problems import json_response, read_json_object
from manager.atlas import paging
from manager.atlas.catalogue import Limits
from manager.atlas.downloads import (
    Member,
    archive,
    content_type,
    extension,
    safe_filename,
    stream_fd,
)
from manager.atlas.driver import JobDriver
from manager.atlas.form import FILE_FIELDS, INVALID, MAX_TEXT, canonical, job_fields
from manager.atlas.identity import Account, require_account
from manager.atlas.jobs import OK, JobService
from manager.atlas.video import stream_to, temp_upload, validate

JOBS = web.AppKey("kraken.atlas.jobs", JobService)
DRIVER = web.AppKey("kraken.atlas.driver", JobDriver)
PREFIXES = ("/atlas", "/krako")
SEED_MESSAGES = {400: INVALID, 401: "Invalid Token information",
                 403: "You do not own this item", 404: "The item cannot be found",
                 500: "API Server Internal Error", 503: "External module error"}
METADATA = {"thumbnail", "request", "reply", "output", "log"}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def seeded(handler: Handler) -> Handler:
    """Add the seed's ``message`` to every problem this handler raises."""
    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except KrakenError as e:
            e.extra.setdefault("message", SEED_MESSAGES.get(e.status, e.title))
            raise
    return wrapped


async def _text(part: BodyPartReader) -> str:
    data = bytearray()
    while chunk := await part.read_chunk():
        data.extend(chunk)
        if len(data) > MAX_TEXT:
            raise BadJobRequest(f"the field {part.name!r} is longer than {MAX_TEXT} bytes")
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise BadJobRequest(f"the field {part.name!r} is not UTF-8 text") from None


async def _chunks(part: BodyPartReader) -> Any:
    while chunk := await part.read_chunk():
        yield chunk


async def read_form(request: web.Request, fd: int, limits: Limits) -> dict[str, str]:
    """The text fields by canonical name; the video streamed into ``fd`` (capped)."""
    if not request.content_type.startswith("multipart/form-data"):
        raise BadJobRequest("send the job as multipart/form-data")
    text: dict[str, str] = {}
    got_file = False
    with malformed_multipart():
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise BadJobRequest("nested multipart bodies are not accepted")
            name = canonical(part.name)
            if name in text or (name in FILE_FIELDS and got_file):
                raise BadJobRequest(f"the field {part.name!r} is given twice")
            if name in FILE_FIELDS:
                await stream_to(_chunks(part), fd, limits)
                got_file = True
            else:
                text[name] = await _text(part)
    if not got_file:
        raise BadJobRequest("'payLoad' (the video file) is required")
    return text


@seeded
async def create_item(request: web.Request) -> web.Response:
    account = await require_account(request)
    jobs = request.app[JOBS]
    model, _ = (await jobs.catalogue()).installed(request.match_info["model"])
    async with temp_upload(jobs.config.upload_dir) as (path, fd):
        fields = job_fields(await read_form(request, fd, model.limits),
                            needs_epoch=model.epoch)
        await validate(path, model.limits, jobs.config.probe_timeout)
        body = await jobs.create(account, model, fields, path)
    return json_response(body, status=201)


@seeded
async def list_models(request: web.Request) -> web.Response:
    catalogue = await request.app[JOBS].catalogue()
    return json_response({"models": [m.public() for m in catalogue.models]})


@seeded
async def detail(request: web.Request) -> web.Response:
    account = await require_account(request)
    return json_response(await request.app[JOBS].detail(account, request.match_info["id"]))


@seeded
async def my_items(request: web.Request) -> web.Response:
    account = await require_account(request)
    jobs = request.app[JOBS]
    model = (await jobs.catalogue()).by_id(request.match_info["model_id"])
    query = paging.page_query(dict(request.query))
    return json_response(await jobs.list_mine(account, model, query))


@seeded
async def delete_item(request: web.Request) -> web.Response:
    account = await require_account(request)
    job_id = request.match_info["id"]
    await request.app[JOBS].delete(account, job_id, request.app[DRIVER].end_session)
    return json_response({"requestId": job_id})


async def _interrupt(request: web.Request, account: Account, job_id: str) -> web.Response:
    await request.app[JOBS].request_interrupt(account, job_id)
    request.app[DRIVER].kick()
    return json_response({"requestId": job_id, "interrupted": True})


@seeded
async def interrupt_item(request: web.Request) -> web.Response:
    account = await require_account(request)
    return await _interrupt(request, account, request.match_info["id"])


@seeded
async def interrupt_body(request: web.Request) -> web.Response:
    account = await require_account(request)
    body = await read_json_object(request)
    job_id = body.get("requestId") or body.get("prompt_id")
    if not isinstance(job_id, str) or not job_id:
        raise BadJobRequest("'requestId' is required")
    return await _interrupt(request, account, job_id)


@seeded
async def history(request: web.Request) -> web.Response:
    account = await require_account(request)
    limit, offset = paging.offset_query(dict(request.query))
    return json_response(await request.app[JOBS].history(account, limit, offset))


async def _owner_and_row(request: web.Request) -> tuple[Any, Any, JobService]:
    account = await require_account(request)
    jobs = request.app[JOBS]
    row = await jobs.owned(account, request.match_info["id"])
    return await jobs.keypair(account.access_key), row, jobs


@seeded
async def download(request: web.Request) -> web.StreamResponse:
    owner, row, jobs = await _owner_and_row(request)
    code = request.query.get("code", "1")
    if row.status != OK:
        raise NotFound(f"the item is {row.status}, not finished OK")
    filename = (row.outputs or {}).get(code)
    if not isinstance(filename, str):
        raise NotFound(f"the item has no result for code {code[:10]!r}; it has "
                       + ", ".join(sorted(row.outputs or {})))
    ext = extension(filename)
    async with jobs.files.open(owner, str(row.id), f"outputs/{filename}") as payload:
        return await stream_fd(request, payload.fd, payload.size,
                               safe_filename(row.item_name, ext), content_type(ext))


def _metadata_files(kind: str, row: Any) -> list[str]:
    if kind == "request":
        return [names.REQUEST, str((row.params or {}).get("input", "input/input.mp4"))]
    if kind == "reply":
        return [names.RESULT, names.PROGRESS]
    outputs = list((row.outputs or {}).values())
    thumb = (row.metrics or {}).get("thumbnail")
    return [f"{names.OUTPUTS}/{n}" for n in [*outputs, *([thumb] if thumb else [])]]


@seeded
async def metadata(request: web.Request) -> web.StreamResponse:
    owner, row, jobs = await _owner_and_row(request)
    kind, job = request.match_info["type"], str(row.id)
    if kind in ("thumbnail", "log"):
        rel = names.LOG if kind == "log" else \
            f"{names.OUTPUTS}/{(row.metrics or {}).get('thumbnail') or names.THUMBNAIL}"
        ext = "txt" if kind == "log" else "png"
        async with jobs.files.open(owner, job, rel) as payload:
            return await stream_fd(request, payload.fd, payload.size,
                                   safe_filename(row.item_name, ext), content_type(ext))
    ext = "zip" if kind == "output" else "tar.gz"
    name = {"request": "request", "reply": "reply", "output": "output"}[kind]
    members: list[Member] = []
    async with contextlib.AsyncExitStack() as stack:
        for rel in _metadata_files(kind, row):
            try:
                payload = await stack.enter_async_context(jobs.files.open(owner, job, rel))
            except NotFound:
                continue  # a reply without progress lines, an output not written
            members.append(Member(rel.removeprefix("outputs/"), payload.fd, payload.size))
        if not members:
            raise NotFound(f"the item has no {kind} files yet")
        async with archive(ext, members) as (fd, size):
            return await stream_fd(request, fd, size, f"{name}.{ext}", content_type(ext))


def add_routes(app: web.Application) -> None:
    r = app.router
    for p in PREFIXES:
        r.add_get(f"{p}/models", list_models)
        r.add_post(f"{p}/model/{{model}}/create", create_item)
        r.add_get(f"{p}/item/detail/my/{{id}}", detail)
        r.add_get(f"{p}/item/detail/{{id}}", detail)
        r.add_get(f"{p}/item/my-item/{{id}}", detail)
        r.add_get(f"{p}/item/my/{{model_id}}", my_items)
        r.add_get(f"{p}/item/download/{{id}}", download)
        r.add_get(f"{p}/item/{{type:{'|'.join(sorted(METADATA))}}}/{{id}}", metadata)
        r.add_post(f"{p}/item/{{id}}/interrupt", interrupt_item)
        r.add_post(f"{p}/item/{{model}}", create_item)
        r.add_delete(f"{p}/item/{{id}}", delete_item)
        r.add_get(f"{p}/history", history)
        r.add_post(f"{p}/interrupt", interrupt_body)
    r.add_get("/history", history)
    r.add_post("/interrupt", interrupt_body)
