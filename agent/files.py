"""Files of a kernel, handled on the host in its scratch dir (the container's /home/work).

The agent runs as root, and the container may have planted symlinks in its scratch
dir, so every path is walked one component at a time with ``openat``-style calls
(``dir_fd``) and ``O_NOFOLLOW``: a symlink anywhere on the way is refused, never
followed, and ``..`` or an absolute path outside /home/work never gets that far.
Written files and created directories belong to the kernel user (uid 1000).
These functions block; the agent calls them through ``asyncio.to_thread``.
"""
from __future__ import annotations

import contextlib
import errno
import io
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common.errors import Forbidden, InvalidAPIParameters, NotFound
from jail.policy import KERNEL_GID, KERNEL_UID

HOME = "/home/work"
MAX_UPLOAD_FILES = 20
MAX_UPLOAD_BYTES = 1 << 20  # per file
MAX_DOWNLOAD_FILES = 5
MAX_DOWNLOAD_BYTES = 16 << 20  # per file
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def split_path(path: str) -> list[str]:
    """The components of ``path`` below /home/work; refuses anything that leaves it."""
    if not isinstance(path, str) or "\x00" in path:
        raise InvalidAPIParameters("a path must be a string without NUL characters")
    if path.startswith("/"):
        if path != HOME and not path.startswith(HOME + "/"):
            raise Forbidden(f"{path!r} is outside {HOME}")
        path = path[len(HOME):]
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise Forbidden(f"{path!r}: '..' is not allowed")
    return parts


def _os_error(e: OSError, path: str) -> Exception:
    if e.errno in (errno.ELOOP, errno.EMLINK):
        return Forbidden(f"{path!r} is or passes through a symbolic link; refused")
    if e.errno == errno.ENOENT:
        return NotFound(f"{path!r}: no such file or directory")
    if e.errno == errno.ENOTDIR:
        return InvalidAPIParameters(f"{path!r}: a component is not a directory")
    if e.errno == errno.EISDIR:
        return InvalidAPIParameters(f"{path!r} is a directory")
    return InvalidAPIParameters(f"{path!r}: {os.strerror(e.errno or 0)}")


@contextlib.contextmanager
def _walk(scratch: Path, parts: list[str], create: bool = False) -> Iterator[int]:
    """An fd of the directory ``scratch/parts``, every component opened O_NOFOLLOW."""
    fd = os.open(scratch, _DIR_FLAGS)
    try:
        for name in parts:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o755, dir_fd=fd)
                    os.chown(name, KERNEL_UID, KERNEL_GID, dir_fd=fd, follow_symlinks=False)
            child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def write_file(scratch: Path, path: str, data: bytes) -> str:
    """Write one uploaded file; returns its path relative to /home/work."""
    parts = split_path(path)
    if not parts:
        raise InvalidAPIParameters(f"{path!r} names no file")
    if len(data) > MAX_UPLOAD_BYTES:
        raise InvalidAPIParameters(f"{path!r} is larger than {MAX_UPLOAD_BYTES} bytes")
    try:
        with _walk(scratch, parts[:-1], create=True) as dir_fd:
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(parts[-1], flags, 0o644, dir_fd=dir_fd)
            with os.fdopen(fd, "wb") as f:
                if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                    raise InvalidAPIParameters(f"{path!r} is not a regular file")
                os.fchown(f.fileno(), KERNEL_UID, KERNEL_GID)
                f.write(data)
    except OSError as e:
        raise _os_error(e, path) from None
    return "/".join(parts)


def upload(scratch: Path, files: list[dict[str, Any]]) -> list[str]:
    """Check every entry first, then write them all."""
    if not isinstance(files, list) or len(files) > MAX_UPLOAD_FILES:
        raise InvalidAPIParameters(f"at most {MAX_UPLOAD_FILES} files per upload")
    for item in files:
        if not isinstance(item, dict) or not isinstance(item.get("data"), bytes):
            raise InvalidAPIParameters("each file needs a path and bytes of data")
        if not split_path(item.get("path")):  # type: ignore[arg-type]
            raise InvalidAPIParameters(f"{item.get('path')!r} names no file")
    return [write_file(scratch, item["path"], item["data"]) for item in files]


def list_dir(scratch: Path, path: str) -> tuple[str, list[dict[str, Any]]]:
    """(absolute path in the container, entries) of one directory."""
    parts = split_path(path or ".")
    entries: list[dict[str, Any]] = []
    try:
        with _walk(scratch, parts) as fd:
            for name in sorted(os.listdir(fd)):
                with contextlib.suppress(FileNotFoundError):
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    entries.append({"filename": name, "size": st.st_size,
                                    "mode": stat.filemode(st.st_mode), "mtime": st.st_mtime})
    except OSError as e:
        raise _os_error(e, path) from None
    return "/".join([HOME, *parts]), entries


def _read_regular(scratch: Path, path: str) -> tuple[bytes, os.stat_result]:
    parts = split_path(path)
    if not parts:
        raise InvalidAPIParameters(f"{path!r} is a directory, not a file")
    try:
        with _walk(scratch, parts[:-1]) as dir_fd:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
            with os.fdopen(fd, "rb") as f:
                st = os.fstat(f.fileno())
                if not stat.S_ISREG(st.st_mode):
                    raise InvalidAPIParameters(f"{path!r} is not a regular file")
                if st.st_size > MAX_DOWNLOAD_BYTES:
                    raise InvalidAPIParameters(
                        f"{path!r} is larger than {MAX_DOWNLOAD_BYTES} bytes")
                return f.read(MAX_DOWNLOAD_BYTES + 1)[:MAX_DOWNLOAD_BYTES], st
    except OSError as e:
        raise _os_error(e, path) from None


def tar_file(scratch: Path, path: str) -> bytes:
    """One file as a tar archive holding it under its base name."""
    data, st = _read_regular(scratch, path)
    info = tarfile.TarInfo(split_path(path)[-1])
    info.size, info.mtime, info.mode = len(data), int(st.st_mtime), stat.S_IMODE(st.st_mode)
    info.uid, info.gid, info.uname, info.gname = KERNEL_UID, KERNEL_GID, "work", "work"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def download(scratch: Path, files: list[str]) -> list[bytes]:
    if not isinstance(files, list) or not 1 <= len(files) <= MAX_DOWNLOAD_FILES:
        raise InvalidAPIParameters(f"download 1 to {MAX_DOWNLOAD_FILES} files at a time")
    return [tar_file(scratch, f) for f in files]
