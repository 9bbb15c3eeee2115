"""File operations confined to a directory a user controls (a virtual folder, a kernel's
scratch dir), safe against a concurrent process swapping names for symlinks.

Every function takes the directory as an open file descriptor (``root``) and a path as
a tuple of checked components (:func:`split`). Paths are resolved below ``root`` one
component at a time with ``O_NOFOLLOW | O_DIRECTORY`` — or in one ``openat2`` call with
``RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`` where the kernel has it — and every change
(``mkdir``, ``unlink``, ``rename``) is made relative to the descriptor of its parent.
No user path ever reaches a path-based call, so a symlink anywhere is refused, never
followed. Files are opened ``O_NONBLOCK`` and checked with ``fstat``: a FIFO, socket or
device is refused (:class:`NotRegularFile`) without ever blocking.

These functions block; they run in the unprivileged worker (``common.confined_worker``).
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat
from collections.abc import Iterator
from functools import cache
from typing import Any

from common.errors import (
    InvalidAPIParameters,
    KrakenError,
    NotRegularFile,
    PathNotAllowed,
    PathNotFound,
    ResourceLimitExceeded,
)

Parts = tuple[str, ...]
MAX_PATH = 4096
MAX_COMPONENT = 255
MAX_DEPTH = 1024  # nested directories walked by delete, usage and tar packing
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
WRITE_FLAGS = os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_SYS_OPENAT2 = {"x86_64": 437, "aarch64": 437}
_RESOLVE_NO_MAGICLINKS, _RESOLVE_NO_SYMLINKS, _RESOLVE_BENEATH = 0x02, 0x04, 0x08


def split(path: Any, *, allow_root: bool = True, what: str = "path") -> Parts:
    """The components of a relative ``path`` (``.`` and empty parts dropped).

    Absolute paths, ``..``, NUL bytes, components over 255 bytes and paths over 4096
    characters are refused with :class:`PathNotAllowed`.
    """
    if not isinstance(path, str):
        raise InvalidAPIParameters(f"'{what}' must be a string")
    if "\x00" in path or len(path) > MAX_PATH:
        raise PathNotAllowed(f"'{what}' contains NUL or is longer than {MAX_PATH}")
    if path.startswith("/"):
        raise PathNotAllowed(f"'{what}' must be relative: {path!r}")
    parts = tuple(p for p in path.split("/") if p not in ("", "."))
    if ".." in parts:
        raise PathNotAllowed(f"'{what}' must not contain '..': {path!r}")
    if any(len(p.encode("utf-8", "surrogateescape")) > MAX_COMPONENT for p in parts):
        raise PathNotAllowed(f"'{what}' has a component longer than {MAX_COMPONENT} bytes")
    if not parts and not allow_root:
        raise PathNotAllowed(f"'{what}' must name something inside the directory")
    return parts


def show(parts: Parts) -> str:
    return "/".join(parts) or "."


def os_error(e: OSError, parts: Parts) -> KrakenError:
    """The user-facing error for an ``OSError`` met while resolving ``parts``."""
    name = show(parts)
    if e.errno in (errno.ELOOP, errno.EXDEV, errno.EMLINK):
        return PathNotAllowed(f"{name!r} is or passes through a symbolic link; refused")
    if e.errno == errno.ENOENT:
        return PathNotFound(f"{name!r}: no such file or directory")
    if e.errno in (errno.ENXIO, errno.ENODEV):
        return NotRegularFile(f"{name!r} is not a regular file or directory")
    if e.errno == errno.ENOTDIR:  # also O_DIRECTORY | O_NOFOLLOW meeting a symlink
        return PathNotAllowed(f"{name!r}: a component is a symbolic link or not a directory")
    if e.errno == errno.EISDIR:
        return InvalidAPIParameters(f"{name!r} is a directory")
    if e.errno == errno.EEXIST:
        return InvalidAPIParameters(f"{name!r} exists")
    if e.errno == errno.ENOTEMPTY:
        return InvalidAPIParameters(f"{name!r} is a directory that is not empty")
    if e.errno == errno.ENOSPC or e.errno == errno.EDQUOT:
        return ResourceLimitExceeded(f"{name!r}: no space left")
    if e.errno == errno.ENAMETOOLONG:
        return PathNotAllowed(f"{name!r}: name too long")
    return InvalidAPIParameters(f"{name!r}: {os.strerror(e.errno or 0)}")


@contextlib.contextmanager
def translated(parts: Parts) -> Iterator[None]:
    try:
        yield
    except OSError as e:
        raise os_error(e, parts) from None


# ---- resolving ---------------------------------------------------------------------


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


@cache
def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)


def _openat2(dirfd: int, path: str, flags: int) -> int:
    how = _OpenHow(flags, 0, _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS)
    nr = _SYS_OPENAT2[os.uname().machine]
    fd = _libc().syscall(nr, dirfd, os.fsencode(path), ctypes.byref(how), ctypes.sizeof(how))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return int(fd)


@cache
def has_openat2() -> bool:
    """Whether ``openat2`` works here (Linux ≥ 5.6, not filtered by seccomp)."""
    if os.uname().machine not in _SYS_OPENAT2:
        return False
    probe = os.open("/", DIR_FLAGS)
    try:
        os.close(_openat2(probe, ".", DIR_FLAGS))
    except OSError:
        return False
    finally:
        os.close(probe)
    return True


def open_dir(root: int, parts: Parts, *, create: bool = False) -> int:
    """A new descriptor of the directory ``root/parts`` (created when ``create``)."""
    if not parts:
        return os.dup(root)
    if not create and has_openat2():
        return _openat2(root, "/".join(parts), DIR_FLAGS)
    fd = os.dup(root)
    try:
        for name in parts:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o755, dir_fd=fd)
            child = os.open(name, DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def parent_of(root: int, parts: Parts, *, create: bool = False) -> Iterator[int]:
    """The descriptor of the directory holding ``parts[-1]``."""
    fd = open_dir(root, parts[:-1], create=create)
    try:
        yield fd
    finally:
        os.close(fd)


def open_node(dirfd: int, name: str, flags: int = READ_FLAGS, mode: int = 0o644) -> int:
    """Open ``name`` in ``dirfd`` without following it or blocking; only a regular file
    or a directory is returned (anything else: :class:`NotRegularFile`)."""
    fd = os.open(name, flags, mode, dir_fd=dirfd)
    st = os.fstat(fd)
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        os.close(fd)
        raise NotRegularFile(f"{name!r} is not a regular file or directory")
    return fd


def open_read(root: int, parts: Parts) -> int:
    """A read-only descriptor of a regular file or directory (never a symlink, FIFO,
    socket or device); blocking mode restored for regular files."""
    if not parts:
        return open_dir(root, ())
    with translated(parts), parent_of(root, parts) as parent:
        fd = open_node(parent, parts[-1])
    os.set_blocking(fd, True)
    return fd


# ---- entries -----------------------------------------------------------------------


def entry(dirfd: int, name: str) -> dict[str, Any]:
    """The listing record of ``name`` (the link itself for a symlink)."""
    st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    return {"filename": name, "size": st.st_size, "mode": stat.filemode(st.st_mode),
            "mtime": st.st_mtime, "atime": st.st_atime, "ctime": st.st_ctime}


def list_dir(root: int, parts: Parts) -> list[dict[str, Any]]:
    with translated(parts):
        fd = open_dir(root, parts)
        try:
            out = []
            for name in sorted(os.listdir(fd)):
                with contextlib.suppress(FileNotFoundError):
                    out.append(entry(fd, name))
            return out
        finally:
            os.close(fd)


def make_dir(root: int, parts: Parts) -> None:
    """``mkdir -p`` below ``root``; an existing non-directory on the way is an error."""
    with translated(parts):
        os.close(open_dir(root, parts, create=True))


def lstat_at(root: int, parts: Parts) -> os.stat_result | None:
    """The ``lstat`` of ``parts`` (its parents resolved confined), None when it or a
    parent is absent."""
    with translated(parts):
        try:
            with parent_of(root, parts) as parent:
                return os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return None


def write_file(root: int, parts: Parts, data: bytes) -> None:
    """Create or overwrite a regular file in place (parents created); a symlink,
    FIFO or directory at ``parts`` is refused."""
    if not parts:
        raise InvalidAPIParameters("the path names no file")
    with translated(parts), parent_of(root, parts, create=True) as parent:
        fd = open_node(parent, parts[-1], WRITE_FLAGS | os.O_CREAT)
        with os.fdopen(fd, "wb") as f:
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                raise InvalidAPIParameters(f"{show(parts)!r} is a directory")
            os.set_blocking(fd, True)
            f.truncate(0)
            f.write(data)


def move(src_root: int, src: Parts, dst_root: int, dst: Parts) -> None:
    """``rename`` between two confined places; replaces a symlink at ``dst`` itself."""
    with translated(dst), parent_of(src_root, src) as sp, parent_of(dst_root, dst) as dp:
        os.rename(src[-1], dst[-1], src_dir_fd=sp, dst_dir_fd=dp)


# ---- walking -----------------------------------------------------------------------


def _children(fd: int) -> list[os.DirEntry[str]]:
    with os.scandir(fd) as it:
        return list(it)


def walk(fd: int, depth: int = 0) -> Iterator[tuple[int, os.DirEntry[str], int]]:
    """(dir fd, entry, depth) for everything below ``fd``, depth first, pre-order;
    directories are opened ``O_NOFOLLOW | O_DIRECTORY`` (a swapped-in symlink or
    FIFO is skipped, never followed or blocked on)."""
    if depth > MAX_DEPTH:
        raise PathNotAllowed(f"directories nested deeper than {MAX_DEPTH}")
    for child in _children(fd):
        yield fd, child, depth
        if child.is_dir(follow_symlinks=False):
            try:
                sub = os.open(child.name, DIR_FLAGS, dir_fd=fd)
            except (FileNotFoundError, NotADirectoryError, OSError):
                continue
            try:
                yield from walk(sub, depth + 1)
            finally:
                os.close(sub)


def usage(root: int) -> tuple[int, int]:
    """(non-directory entries, their apparent size) below ``root``; links not followed."""
    count = size = 0
    for _dirfd, child, _ in walk(root):
        with contextlib.suppress(OSError):
            st = child.stat(follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                count += 1
                size += st.st_size
    return count, size


def clear_dir(fd: int, depth: int = 0) -> None:
    """Remove everything inside the directory ``fd``: symlinks are unlinked
    themselves, subdirectories emptied through their own descriptors."""
    if depth > MAX_DEPTH:
        raise PathNotAllowed(f"directories nested deeper than {MAX_DEPTH}")
    for child in _children(fd):
        remove_at(fd, child.name, depth + 1)


def remove_at(dirfd: int, name: str, depth: int = 0) -> None:
    """Remove ``name`` in ``dirfd``: a directory recursively, anything else unlinked."""
    try:
        sub = os.open(name, DIR_FLAGS, dir_fd=dirfd)
    except FileNotFoundError:
        return
    except OSError as e:
        if e.errno not in (errno.ENOTDIR, errno.ELOOP):
            raise
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=dirfd)
        return
    try:
        clear_dir(sub, depth)
    finally:
        os.close(sub)
    with contextlib.suppress(FileNotFoundError):
        os.rmdir(name, dir_fd=dirfd)


def check_removable(root: int, parts: Parts, recursive: bool) -> None:
    if not parts:
        raise PathNotAllowed("the top directory itself cannot be deleted here")
    st = lstat_at(root, parts)
    if st is None:
        raise PathNotFound(f"no file {show(parts)!r}")
    if stat.S_ISDIR(st.st_mode) and not recursive:
        raise InvalidAPIParameters(f"{show(parts)!r} is a directory; set 'recursive'")


def remove(root: int, parts: Parts, recursive: bool) -> None:
    """Delete a file, a symlink (itself) or, with ``recursive``, a directory tree."""
    check_removable(root, parts, recursive)
    with translated(parts), parent_of(root, parts) as parent:
        remove_at(parent, parts[-1])
