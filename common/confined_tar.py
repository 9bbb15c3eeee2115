"""Tar archives of confined directories, without temporary files.

Packing is two steps: :func:`plan` walks the directory by descriptors and records, per
regular file or directory, its tar header (``TarInfo.tobuf``) and apparent size — so
the archive's exact length is known before a byte is sent — and :func:`stream` writes
headers and file data into a pipe. Each file is re-opened confined when streamed and
must still be the inode the plan saw; otherwise (or if it shrank) zeros keep the
archive the length announced. Symlinks, FIFOs, sockets and devices are left out.

Unpacking (:func:`unpack`) checks every member first — only regular files and
directories with confined names, within the limits — then writes them by descriptors.
"""
from __future__ import annotations

import contextlib
import lzma
import os
import stat
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from common.confined_fs import (
    DIR_FLAGS,
    MAX_DEPTH,
    WRITE_FLAGS,
    Parts,
    open_dir,
    open_node,
    show,
    split,
    translated,
)
from common.errors import (
    InvalidAPIParameters,
    PathNotAllowed,
    ResourceLimitExceeded,
)

BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE
CHUNK = 256 * 1024
MAX_MEMBERS = 100_000


@dataclass(frozen=True, slots=True)
class Member:
    parts: Parts  # below the packed directory's parent
    header: bytes
    size: int  # bytes of data (0 for a directory)
    ino: tuple[int, int]  # (st_dev, st_ino) when planned


def _header(arcname: str, st: os.stat_result) -> bytes:
    info = tarfile.TarInfo(arcname)
    info.type = tarfile.DIRTYPE if stat.S_ISDIR(st.st_mode) else tarfile.REGTYPE
    info.size = 0 if stat.S_ISDIR(st.st_mode) else st.st_size
    info.mode, info.mtime = stat.S_IMODE(st.st_mode), int(st.st_mtime)
    info.uid, info.gid = st.st_uid, st.st_gid
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _member(parts: Parts, st: os.stat_result) -> Member:
    size = st.st_size if stat.S_ISREG(st.st_mode) else 0
    return Member(parts, _header("/".join(parts), st), size, (st.st_dev, st.st_ino))


def _walk(fd: int, prefix: Parts, out: list[Member]) -> None:
    if len(prefix) > MAX_DEPTH:
        raise PathNotAllowed(f"directories nested deeper than {MAX_DEPTH}")
    with os.scandir(fd) as it:
        children = sorted(it, key=lambda e: e.name)
    for child in children:
        st = child.stat(follow_symlinks=False)
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            continue
        out.append(_member((*prefix, child.name), st))
        if len(out) > MAX_MEMBERS:
            raise ResourceLimitExceeded(f"more than {MAX_MEMBERS} entries to pack")
        if stat.S_ISDIR(st.st_mode):
            with contextlib.suppress(OSError):
                sub = os.open(child.name, DIR_FLAGS, dir_fd=fd)
                try:
                    _walk(sub, (*prefix, child.name), out)
                finally:
                    os.close(sub)


def plan(root: int, parts: Parts) -> list[Member]:
    """The members of a tar of the directory ``root/parts``, named from its basename."""
    if not parts:
        raise PathNotAllowed("name a directory to pack, not the top directory")
    with translated(parts):
        fd = open_dir(root, parts)
        try:
            out = [_member(parts[-1:], os.fstat(fd))]
            _walk(fd, parts[-1:], out)
        finally:
            os.close(fd)
    return out


def archive_size(members: list[Member]) -> int:
    body = sum(len(m.header) + -(-m.size // BLOCK) * BLOCK for m in members) + 2 * BLOCK
    return -(-body // RECORD) * RECORD


def _write_all(out: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(out, view):]


def _data(root: int, parent: Parts, m: Member) -> Iterator[bytes]:
    """The member's bytes, if it is still the planned regular file; else nothing."""
    try:
        dirfd = open_dir(root, parent + m.parts[:-1])
        try:
            fd = open_node(dirfd, m.parts[-1])
        finally:
            os.close(dirfd)
    except (OSError, PathNotAllowed, InvalidAPIParameters):
        return
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != m.ino or not stat.S_ISREG(st.st_mode):
            return
        os.set_blocking(fd, True)
        left = m.size
        while left and (chunk := os.read(fd, min(CHUNK, left))):
            left -= len(chunk)
            yield chunk
    finally:
        os.close(fd)


def stream(root: int, parts: Parts, members: list[Member], out: int) -> None:
    """Write the archive :func:`plan` described into ``out``, exactly
    :func:`archive_size` bytes long."""
    parent, written = parts[:-1], 0
    for m in members:
        _write_all(out, m.header)
        written += len(m.header)
        sent = 0
        if m.size:
            for chunk in _data(root, parent, m):
                _write_all(out, chunk)
                sent += len(chunk)
        padded = -(-m.size // BLOCK) * BLOCK
        _write_zeros(out, padded - sent)
        written += padded
    _write_zeros(out, archive_size(members) - written)


def _write_zeros(out: int, n: int) -> None:
    zeros = bytes(min(n, CHUNK))
    while n > 0:
        _write_all(out, zeros[:n])
        n -= min(n, CHUNK)


# ---- unpacking ---------------------------------------------------------------------


def check_member(member: tarfile.TarInfo) -> Parts:
    """A member's path, if it is a regular file or directory with a confined name."""
    if not (member.isfile() or member.isdir()):
        raise PathNotAllowed(f"tar member {member.name!r} is not a regular file or directory")
    return split(member.name, allow_root=member.isdir(), what="tar member")


def _copy(src: IO[bytes], dirfd: int, name: str) -> None:
    fd = open_node(dirfd, name, WRITE_FLAGS | os.O_CREAT | os.O_TRUNC)
    with os.fdopen(fd, "wb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InvalidAPIParameters(f"tar member {name!r} clashes with a directory")
        os.set_blocking(fd, True)
        while chunk := src.read(CHUNK):
            f.write(chunk)


def _extract(tar: tarfile.TarFile, checked: list[tuple[tarfile.TarInfo, Parts]],
             dest: int) -> None:
    for member, parts in checked:
        with translated(parts):
            if member.isdir():
                os.close(open_dir(dest, parts, create=True))
                continue
            src = tar.extractfile(member)
            assert src is not None
            dirfd = open_dir(dest, parts[:-1], create=True)
            try:
                _copy(src, dirfd, parts[-1])
            finally:
                os.close(dirfd)


def unpack(archive: int, dest: int, max_files: int, max_bytes: int
           ) -> tuple[list[Parts], list[Parts]]:
    """Extract the tar (any compression) ``archive`` into the directory ``dest``;
    returns (files, directories) extracted. Nothing is written if a member is refused."""
    os.lseek(archive, 0, os.SEEK_SET)
    try:
        with os.fdopen(os.dup(archive), "rb") as raw, tarfile.open(fileobj=raw) as tar:
            checked = [(m, check_member(m)) for m in tar.getmembers()]
            files = [(m, p) for m, p in checked if m.isfile()]
            if len(files) > max_files or sum(m.size for m, _ in files) > max_bytes:
                raise ResourceLimitExceeded(
                    f"the archive holds more than {max_files} files or {max_bytes} bytes")
            _extract(tar, checked, dest)
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, ValueError) as e:
        raise InvalidAPIParameters(f"not a valid tar archive: {e}") from None
    except OSError as e:  # gzip.BadGzipFile, lzma errors and the like
        if isinstance(e, (FileNotFoundError, PermissionError)):
            raise
        raise InvalidAPIParameters(f"not a valid tar archive: {e}") from None
    return [p for _, p in files], [p for m, p in checked if m.isdir() and p]


__all__ = ["Member", "archive_size", "check_member", "plan", "show", "stream", "unpack"]
