"""Files of a kernel, in its scratch dir (the container's /home/work), through the
confined-file worker pool (``common.confined_pool``).

The agent runs as root and the container may plant symlinks, FIFOs or swap names in
its scratch dir at any moment, so the agent never touches those files itself: it opens
the scratch dir (a path of its own) and hands the descriptor to an unprivileged worker
running as the kernel's uid, which resolves the user's path below it component by
component (``common.confined_fs``). Paths may be given relative to /home/work or as
absolute paths inside it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from common.confined_fs import DIR_FLAGS, Parts, split
from common.confined_pool import ConfinedPool
from common.errors import (
    Forbidden,
    InvalidAPIParameters,
    NotFound,
    PathNotAllowed,
    PathNotFound,
    PayloadTooLarge,
    ResourceLimitExceeded,
)
from common.limits import (
    MAX_DOWNLOAD_BYTES,
    MAX_DOWNLOAD_FILES,
    MAX_UPLOAD_BYTES,
    MAX_UPLOAD_FILES,
)
from jail.policy import KERNEL_GID, KERNEL_UID

HOME = "/home/work"
TRANSLATE = {PathNotAllowed: Forbidden, PathNotFound: NotFound,
             ResourceLimitExceeded: PayloadTooLarge}


def split_path(path: Any) -> Parts:
    """The components of ``path`` below /home/work; refuses anything that leaves it."""
    if isinstance(path, str) and path.startswith("/"):
        if path != HOME and not path.startswith(HOME + "/"):
            raise Forbidden(f"{path!r} is outside {HOME}")
        path = path[len(HOME):].lstrip("/")
    try:
        return split(path)
    except PathNotAllowed as e:
        raise Forbidden(str(e)) from None


def scratch_pool(uid: int = KERNEL_UID, gid: int = KERNEL_GID, size: int = 2) -> ConfinedPool:
    """The workers, running as the kernel user."""
    return ConfinedPool(uid, gid, size, TRANSLATE)


class ScratchFiles:
    """Upload, list and download for the kernels' scratch dirs."""

    def __init__(self, pool: ConfinedPool) -> None:
        self.pool = pool

    async def _call(self, scratch: Path, op: str, args: dict[str, Any]) -> Any:
        root = os.open(scratch, DIR_FLAGS)
        try:
            return await self.pool.result(op, args, [root])
        finally:
            os.close(root)

    async def upload(self, scratch: Path, files: Any) -> list[str]:
        """Check every entry first, then write them all (paths relative to /home/work)."""
        if not isinstance(files, list) or len(files) > MAX_UPLOAD_FILES:
            raise InvalidAPIParameters(f"at most {MAX_UPLOAD_FILES} files per upload")
        items = []
        for item in files:
            if not isinstance(item, dict) or not isinstance(item.get("data"), bytes):
                raise InvalidAPIParameters("each file needs a path and bytes of data")
            parts = split_path(item.get("path"))
            if not parts:
                raise InvalidAPIParameters(f"{item.get('path')!r} names no file")
            if len(item["data"]) > MAX_UPLOAD_BYTES:
                raise InvalidAPIParameters(f"{item['path']!r} is larger than "
                                           f"{MAX_UPLOAD_BYTES} bytes")
            items.append([list(parts), item["data"]])
        await self._call(scratch, "write_files", {"files": items})
        return ["/".join(parts) for parts, _ in items]

    async def list_dir(self, scratch: Path, path: Any) -> tuple[str, list[dict[str, Any]]]:
        """(absolute path in the container, entries) of one directory."""
        parts = split_path(path or ".")
        entries = await self._call(scratch, "list", {"path": list(parts)})
        for e in entries:
            e.pop("atime", None)
            e.pop("ctime", None)
        return "/".join([HOME, *parts]), entries

    async def download(self, scratch: Path, files: Any) -> list[bytes]:
        """Each regular file (at most 16 MiB) as a tar archive holding it."""
        if not isinstance(files, list) or not 1 <= len(files) <= MAX_DOWNLOAD_FILES:
            raise InvalidAPIParameters(f"download 1 to {MAX_DOWNLOAD_FILES} files at a time")
        paths = [split_path(f) for f in files]
        if not all(paths):
            raise InvalidAPIParameters("name files to download, not /home/work itself")
        return [await self._call(scratch, "tar_file", {"path": list(p),
                                                       "max_bytes": MAX_DOWNLOAD_BYTES})
                for p in paths]
