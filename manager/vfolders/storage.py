"""The files of virtual folders on the manager's disk: ``<root>/<host>/<id hex>``.

Blocking functions only; callers run them with ``asyncio.to_thread``. Every path
argument was produced by :func:`manager.vfolders.paths.confine` or is re-confined
here; nothing follows a symlink out of a folder.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from common.errors import (
    InvalidAPIParameters,
    VFolderPathNotAllowed,
    VFolderPathNotFound,
)
from manager.vfolders.paths import ROOT, confine

STAGING = ".staging"  # under <root>/<host>/; folder dirs are hex ids, so no clash


@dataclass(frozen=True, slots=True)
class Owner:
    """Who should own folder contents (the kernel user), applied only as root."""

    uid: int
    gid: int

    def apply(self, path: Path) -> None:
        if os.geteuid() == 0:
            os.lchown(path, self.uid, self.gid)


def folder_dir(host_dir: Path, folder_id: uuid.UUID) -> Path:
    return host_dir / folder_id.hex


def create_folder(path: Path, owner: Owner) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.mkdir(mode=0o755)
    owner.apply(path)


def remove_folder(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def usage(path: Path) -> tuple[int, int]:
    """(number of non-directory entries, their total size) — symlinks not followed."""
    count = size = 0
    for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(dirpath, name))
                count += 1
                size += st.st_size
    return count, size


def _entry(path: Path) -> dict[str, Any]:
    st = path.lstat()
    return {"filename": path.name, "size": st.st_size, "mode": stat.filemode(st.st_mode),
            "mtime": st.st_mtime, "atime": st.st_atime, "ctime": st.st_ctime}


def list_dir(root: Path, rel: PurePosixPath) -> list[dict[str, Any]]:
    target = confine(root, rel)
    if not target.is_dir():
        raise VFolderPathNotFound(f"no directory {str(rel)!r} in this folder")
    return [_entry(p) for p in sorted(target.iterdir(), key=lambda p: p.name)]


def make_dir(root: Path, rel: PurePosixPath, owner: Owner) -> None:
    target = confine(root, rel)
    if target.exists() and not target.is_dir():
        raise InvalidAPIParameters(f"{str(rel)!r} exists and is not a directory")
    missing = [p for p in [target, *target.parents] if p != root and not p.exists()
               and str(p).startswith(str(root))]
    target.mkdir(parents=True, exist_ok=True)
    for p in missing:
        owner.apply(p)
    confine(root, rel)  # nothing raced a symlink in while we created


def plan_delete(root: Path, rels: list[PurePosixPath], recursive: bool) -> list[Path]:
    """Check every path first (exists, dirs need ``recursive``) so a bad one deletes none."""
    out = []
    for rel in rels:
        path = confine(root, rel, follow_final=False)
        if not os.path.lexists(path):
            raise VFolderPathNotFound(f"no file {str(rel)!r} in this folder")
        if path.is_dir() and not path.is_symlink() and not recursive:
            raise InvalidAPIParameters(f"{str(rel)!r} is a directory; set 'recursive'")
        out.append(path)
    return out


def delete_paths(paths: list[Path]) -> None:
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif os.path.lexists(path):
            path.unlink()


def readable_file(root: Path, rel: PurePosixPath) -> Path:
    """A regular file or directory to download; symlinks resolved but confined."""
    if rel == ROOT:
        raise VFolderPathNotAllowed("name a file or directory to download, not the root")
    path = confine(root, rel)
    if not path.exists():
        raise VFolderPathNotFound(f"no file {str(rel)!r} in this folder")
    if not (path.is_file() or path.is_dir()):
        raise VFolderPathNotAllowed(f"{str(rel)!r} is not a regular file or directory")
    return path


def new_staging_dir(host_dir: Path) -> Path:
    path = host_dir / STAGING / uuid.uuid4().hex
    path.mkdir(parents=True, mode=0o700)
    return path
