"""Files and console logs of a running session, served by its agent (agent link v1
``upload-files``, ``list-files``, ``download-files``, ``get-logs``)."""
from __future__ import annotations

from typing import Any

from common.errors import KernelNotFound
from common.link import expect
from common.msg_agent import (
    DownloadFiles,
    FileList,
    FilesArchive,
    FilesUploaded,
    GetLogs,
    KernelLogs,
    ListFiles,
    UploadFiles,
)
from manager.registry import AgentRegistry
from manager.services.control import SessionControl
from manager.services.keypairs import KeypairInfo
from manager.services.routes import Route

MAX_UPLOAD_FILES = 20
MAX_UPLOAD_BYTES = 1 << 20  # per file
MAX_DOWNLOAD_FILES = 5


class SessionFiles:
    """The /kernel/:id/{upload,files,download,logs} operations."""

    def __init__(self, control: SessionControl, registry: AgentRegistry) -> None:
        self._control = control
        self._registry = registry
        self._timeout = control.config.link.request_timeout

    async def _ask(self, route: Route, msg: Any, cls: Any) -> Any:
        reply = await self._registry.request(route.agent_id, msg, self._timeout)
        try:
            return expect(reply, cls)
        except KernelNotFound:
            self._control.forget_route(route)
            raise

    async def upload(self, caller: KeypairInfo, ident: str,
                     files: list[tuple[str, bytes]]) -> list[str]:
        route = await self._control.route(caller, ident)
        msg = UploadFiles(kernel_id=str(route.kernel_id),
                          files=[{"path": p, "data": d} for p, d in files])
        return list((await self._ask(route, msg, FilesUploaded)).paths)

    async def list_files(self, caller: KeypairInfo, ident: str, path: str
                         ) -> tuple[str, list[dict[str, Any]]]:
        route = await self._control.route(caller, ident)
        reply = await self._ask(route, ListFiles(kernel_id=str(route.kernel_id), path=path),
                                FileList)
        return reply.abspath, list(reply.files)

    async def download(self, caller: KeypairInfo, ident: str, files: list[str]
                       ) -> list[bytes]:
        route = await self._control.route(caller, ident)
        reply = await self._ask(
            route, DownloadFiles(kernel_id=str(route.kernel_id), files=files), FilesArchive)
        return list(reply.archives)

    async def logs(self, caller: KeypairInfo, ident: str) -> str:
        route = await self._control.route(caller, ident)
        return str((await self._ask(route, GetLogs(kernel_id=str(route.kernel_id)),
                                    KernelLogs)).logs)
