"""``/folders`` handlers (seed 004 §2.15), as the spec and client 18.12.3 call them:
thin — parse, call the vfolder service, reply. Routes exist with and without /v4."""
from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import orjson
from aiohttp import web

from common.confined_pool import ConfinedPool, close_fds
from common.errors import InvalidAPIParameters
from manager.api import vfolder_io as io
from manager.api.auth import caller
from manager.api.keys import CONFIG, DB, TRANSFERS
from manager.api.problems import json_response
from manager.api.version import PREFIXES
from manager.vfolders import invitations
from manager.vfolders.paths import check_name, clean_relpath
from manager.vfolders.service import VFolderService
from manager.vfolders.storage import TRANSLATE, FolderStorage
from manager.vfolders.store import PERMISSIONS

VFOLDERS = web.AppKey("kraken.vfolders", VFolderService)


def _service(request: web.Request) -> VFolderService:
    return request.app[VFOLDERS]


def _name(request: web.Request) -> str:
    return check_name(request.match_info["name"])


def _host(body: dict[str, Any]) -> str | None:
    host = body.get("host")
    if isinstance(host, list) and len(host) <= 1:  # the CLI sends its nargs=-1 tuple
        host = host[0] if host else None
    if host is not None and not isinstance(host, str):
        raise InvalidAPIParameters("'host' must be a string")
    return host or None


async def list_folders(request: web.Request) -> web.Response:
    body = await io.params(request)
    paging = io.paging_param(body)
    items = [f.list_item() for f in await _service(request).visible(caller(request))]
    return json_response(items if paging is None else io.page(items, paging))


async def create(request: web.Request) -> web.Response:
    body = await io.params(request)
    name = check_name(body.get("name"))
    folder = await _service(request).create(caller(request), name, _host(body))
    return json_response({"id": folder.id.hex, "name": folder.name, "host": folder.host},
                         status=201)


async def info(request: web.Request) -> web.Response:
    item = (await _service(request).info(caller(request), _name(request))).item()
    return json_response({"item": item, **item})  # spec wraps in item; the client reads top


async def delete(request: web.Request) -> web.Response:
    await _service(request).delete(caller(request), _name(request))
    return web.Response(status=204)


async def list_files(request: web.Request) -> web.Response:
    body = await io.params(request)
    rel = clean_relpath(body.get("path") or ".")
    files = await _service(request).list_files(caller(request), _name(request), rel)
    return json_response({"files": orjson.dumps(files).decode(), "folder_path": str(rel)})


def _transfer_slot(request: web.Request) -> AbstractAsyncContextManager[None]:
    return request.app[TRANSFERS].slot(f"keypair:{caller(request).access_key}")


async def upload(request: web.Request) -> web.Response:
    async with _transfer_slot(request):
        count = await _service(request).upload(
            caller(request), _name(request), lambda batch: io.receive(request, batch))
    return json_response({"uploaded": count}, status=201)


async def mkdir(request: web.Request) -> web.Response:
    body = await io.params(request)
    rel = clean_relpath(body.get("path"), allow_root=False)
    await _service(request).mkdir(caller(request), _name(request), rel)
    return json_response({}, status=201)


async def download(request: web.Request) -> web.StreamResponse:
    rels = io.paths_param(await io.params(request))
    async with _transfer_slot(request):
        payloads, cap = await _service(request).open_download(caller(request),
                                                               _name(request), rels)
        try:
            io.check_download(payloads, cap)
        except BaseException:
            close_fds([p.fd for p in payloads])
            raise
        return await io.send(request, payloads)


async def delete_files(request: web.Request) -> web.Response:
    body = await io.params(request)
    rels = io.paths_param(body)
    recursive = io.bool_param(body, "recursive")
    await _service(request).delete_files(caller(request), _name(request), rels, recursive)
    return json_response({})


async def invite(request: web.Request) -> web.Response:
    body = await io.params(request)
    perm = body.get("perm", "rw")
    if perm not in PERMISSIONS:
        raise InvalidAPIParameters(f"'perm' must be one of {list(PERMISSIONS)}")
    user_ids = body.get("user_ids")
    if not isinstance(user_ids, list) or not user_ids or not all(
            isinstance(u, str) and 0 < len(u) <= 256 for u in user_ids):
        raise InvalidAPIParameters("'user_ids' must be a non-empty list of user ids")
    folder = await _service(request).get(caller(request), _name(request))
    invited = await invitations.invite(request.app[DB], caller(request), folder, perm,
                                       user_ids)
    return json_response({"invited_ids": invited})


async def list_invitations(request: web.Request) -> web.Response:
    items = await invitations.received(request.app[DB], caller(request))
    return json_response({"invitations": items})


async def accept_invitation(request: web.Request) -> web.Response:
    body = await io.params(request)
    inv_id = invitations.parse_id(body.get("inv_id"))
    inv_ak = body.get("inv_ak")
    if inv_ak is not None and inv_ak != caller(request).access_key:
        raise InvalidAPIParameters("'inv_ak' must be your own access key")
    msg = await invitations.accept(request.app[DB], caller(request), inv_id)
    return json_response({"msg": msg})


async def reject_invitation(request: web.Request) -> web.Response:
    inv_id = invitations.parse_id((await io.params(request)).get("inv_id"))
    msg = await invitations.reject(request.app[DB], caller(request), inv_id)
    return json_response({"msg": msg})


async def vfolders_ctx(app: web.Application) -> AsyncIterator[None]:
    """The service and its confined-file workers (running as the session uid)."""
    config = app[CONFIG].vfolders
    pool = ConfinedPool(config.owner_uid, config.owner_gid, config.workers, TRANSLATE)
    await pool.start()
    storage = FolderStorage(config.host_dir, pool)
    app[VFOLDERS] = VFolderService(config, app[DB], storage)
    try:
        yield
    finally:
        await pool.close()


def add_routes(app: web.Application) -> None:
    """Routes, fixed paths before ``{name}`` ones; plus the service's cleanup_ctx."""
    app.cleanup_ctx.append(vfolders_ctx)
    for prefix in PREFIXES:
        r, base = app.router, f"{prefix}/folders"
        r.add_get(base, list_folders)
        r.add_post(base, create)
        r.add_post(f"{base}/create", create)
        r.add_get(f"{base}/invitations/list", list_invitations)
        r.add_post(f"{base}/invitations/accept", accept_invitation)
        r.add_delete(f"{base}/invitations/delete", reject_invitation)
        r.add_post(f"{base}/invitations/delete", reject_invitation)
        r.add_get(f"{base}/{{name}}", info)
        r.add_delete(f"{base}/{{name}}", delete)
        r.add_get(f"{base}/{{name}}/files", list_files)
        r.add_post(f"{base}/{{name}}/upload", upload)
        r.add_post(f"{base}/{{name}}/mkdir", mkdir)
        r.add_get(f"{base}/{{name}}/download", download)
        r.add_delete(f"{base}/{{name}}/delete_files", delete_files)
        r.add_post(f"{base}/{{name}}/invite", invite)
