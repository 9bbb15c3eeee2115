"""Files and console logs of a running session, served by its agent (agent link v1
``upload-files``, ``list-files``, ``download-files``, ``get-logs``)."""
from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

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
from manager.services.control import SessionControl
from manager.services.keypairs import KeypairInfo
from manager.services.routes import Route
from manager.services.transfers import TransferGate

__all__ = ["SessionFiles"]


class SessionFiles:
    """The /kernel/:id/{upload,files,download,logs} operations."""

    def __init__(self, control: SessionControl, gate: TransferGate) -> None:
        self._control = control
        self._gate = gate

    def _slot(self, caller: KeypairInfo, route: Route) -> AbstractAsyncContextManager[None]:
        """A transfer slot of the caller's keypair and of the session's agent."""
        return self._gate.slot(f"keypair:{caller.access_key}", f"agent:{route.agent_id}")

    async def upload(self, caller: KeypairInfo, ident: str,
                     files: list[tuple[str, bytes]]) -> list[str]:
        route = await self._control.route(caller, ident)
        msg = UploadFiles(kernel_id=str(route.kernel_id),
                          files=[{"path": p, "data": d} for p, d in files])
        async with self._slot(caller, route):
            return list((await self._control.ask(route, msg, FilesUploaded)).paths)

    async def list_files(self, caller: KeypairInfo, ident: str, path: str
                         ) -> tuple[str, list[dict[str, Any]]]:
        route = await self._control.route(caller, ident)
        reply = await self._control.ask(
            route, ListFiles(kernel_id=str(route.kernel_id), path=path), FileList)
        return reply.abspath, list(reply.files)

    async def download(self, caller: KeypairInfo, ident: str, files: list[str]
                       ) -> list[bytes]:
        route = await self._control.route(caller, ident)
        async with self._slot(caller, route):
            reply = await self._control.ask(
                route, DownloadFiles(kernel_id=str(route.kernel_id), files=files),
                FilesArchive)
        return list(reply.archives)

    async def logs(self, caller: KeypairInfo, ident: str) -> str:
        route = await self._control.route(caller, ident)
        reply = await self._control.ask(route, GetLogs(kernel_id=str(route.kernel_id)),
                                        KernelLogs)
        return str(reply.logs)
