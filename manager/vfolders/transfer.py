"""Moving bytes in and out of a folder: staged uploads (plain files and tar archives)
committed all-or-nothing under the folder's limits, and downloads as one multipart
stream of gzip-encoded parts (the format client 18.12.3 reads).

Blocking helpers are plain functions for ``asyncio.to_thread``.
"""
from __future__ import annotations

import os
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

from common.errors import InvalidAPIParameters, VFolderLimitExceeded
from manager.vfolders.paths import ROOT, check_tar_member, confine
from manager.vfolders.storage import Owner, readable_file

TAR_TYPES = frozenset({"application/x-tar", "application/x-gtar"})


@dataclass(frozen=True, slots=True)
class Limits:
    max_files: int
    max_bytes: int


@dataclass(slots=True)
class Batch:
    """Files staged for one upload request: destination → staged source."""

    staging: Path
    limits: Limits
    files: dict[PurePosixPath, Path] = field(default_factory=dict)
    dirs: set[PurePosixPath] = field(default_factory=set)
    total: int = 0
    _seq: int = 0

    def next_path(self) -> Path:
        self._seq += 1
        return self.staging / f"p{self._seq}"

    def account(self, nbytes: int) -> None:
        self.total += nbytes
        if self.total > self.limits.max_bytes:
            raise VFolderLimitExceeded(
                f"the upload exceeds the folder size limit of {self.limits.max_bytes} bytes")

    def add_file(self, rel: PurePosixPath, staged: Path) -> None:
        self.files[rel] = staged
        if len(self.files) > self.limits.max_files:
            raise VFolderLimitExceeded(
                f"the upload exceeds the folder limit of {self.limits.max_files} files")


def stage_tar(batch: Batch, target: PurePosixPath, archive: Path) -> None:
    """Validate every member of ``archive`` first, then extract it into staging."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            checked = [(m, check_tar_member(m)) for m in members]
            batch.account(sum(m.size for m, _ in checked if m.isfile()))
            out = batch.next_path()
            out.mkdir()
            tar.extractall(out, members=members, filter="data")
    except tarfile.TarError as e:
        raise InvalidAPIParameters(f"not a valid tar archive: {e}") from None
    for member, rel in checked:
        dest = target / rel if rel != ROOT else target
        if member.isdir():
            batch.dirs.add(dest)
        else:
            batch.add_file(dest, out / rel)


def _check_parents(root: Path, rel: PurePosixPath) -> None:
    for parent in reversed(rel.parents):
        path = confine(root, parent)
        if path.exists() and not path.is_dir():
            raise InvalidAPIParameters(f"{str(parent)!r} exists and is not a directory")


def plan_commit(root: Path, batch: Batch, current: tuple[int, int]) -> tuple[int, int]:
    """Check destinations and limits; returns the folder's (files, bytes) afterwards."""
    count, size = current
    for rel in sorted(batch.dirs):
        _check_parents(root, rel / "x")
    for rel, staged in batch.files.items():
        _check_parents(root, rel)
        dest = confine(root, rel, follow_final=False)
        if dest.is_dir() and not dest.is_symlink():
            raise InvalidAPIParameters(f"{str(rel)!r} is a directory in the folder")
        if os.path.lexists(dest):
            count -= 1
            size -= dest.lstat().st_size
        count += 1
        size += staged.stat().st_size
    return count, size


def check_limits(after: tuple[int, int], limits: Limits) -> None:
    if after[0] > limits.max_files:
        raise VFolderLimitExceeded(f"the folder would hold {after[0]} files; "
                                   f"the limit is {limits.max_files}")
    if after[1] > limits.max_bytes:
        raise VFolderLimitExceeded(f"the folder would hold {after[1]} bytes; "
                                   f"the limit is {limits.max_bytes}")


def _make_parents(root: Path, rel: PurePosixPath, owner: Owner) -> None:
    for parent in reversed(rel.parents):
        path = confine(root, parent)
        if not path.exists():
            path.mkdir()
            owner.apply(path)


def commit(root: Path, batch: Batch, owner: Owner) -> None:
    """Move staged files into place (after :func:`plan_commit` accepted them)."""
    for rel in sorted(batch.dirs):
        _make_parents(root, rel / "x", owner)
    for rel, staged in batch.files.items():
        _make_parents(root, rel, owner)
        dest = confine(root, rel, follow_final=False)
        os.replace(staged, dest)  # replaces a symlink itself, never its target
        owner.apply(dest)


# ---- downloads -------------------------------------------------------------------------


def _regular_or_dir(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    return info if info.isfile() or info.isdir() else None


def pack_dir(path: Path) -> IO[bytes]:
    """A directory as an uncompressed tar in a temp file (symlinks and specials left out)."""
    tmp = tempfile.TemporaryFile()
    with tarfile.open(fileobj=tmp, mode="w") as tar:
        tar.add(path, arcname=path.name, filter=_regular_or_dir)
    tmp.seek(0)
    return tmp


def open_regular(path: Path) -> IO[bytes]:
    """Open without following a final symlink (the path is already resolved)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    return os.fdopen(fd, "rb")


def payload_size(fp: IO[bytes]) -> int:
    return os.fstat(fp.fileno()).st_size


def open_payloads(root: Path, rels: list[PurePosixPath]) -> list[tuple[str, IO[bytes]]]:
    """(filename for the client, open file) per requested path; a directory is a tar.
    All paths are checked before any is returned, so one bad path sends nothing."""
    paths = [(rel, readable_file(root, rel)) for rel in rels]
    out: list[tuple[str, IO[bytes]]] = []
    try:
        for rel, path in paths:
            if path.is_dir():
                out.append((rel.name + ".tar", pack_dir(path)))
            else:
                out.append((rel.name, open_regular(path)))
    except BaseException:
        for _, fp in out:
            fp.close()
        raise
    return out
