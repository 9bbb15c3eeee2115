"""The operations the confined-file worker serves: ``OPS[name](args, fds)``.

Each takes msgpack-able arguments plus the directory descriptors the caller passed
(the first is always the confined root) and returns (result, descriptors to send
back). Paths arrive as lists of components and are re-checked with
:func:`common.confined_fs.split` — the worker trusts no caller-side validation.
"""
from __future__ import annotations

import contextlib
import io
import os
import signal
import stat
import tarfile
from collections.abc import Callable
from typing import Any

from common import confined_fs as cfs
from common import confined_tar as ctar
from common.errors import (
    InvalidAPIParameters,
    PathNotAllowed,
    PathNotFound,
    ResourceLimitExceeded,
)

Result = tuple[Any, list[int]]
Op = Callable[[dict[str, Any], list[int]], Result]
CREATE_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def parts_of(value: Any, *, allow_root: bool = True) -> cfs.Parts:
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise InvalidAPIParameters("a path must be a list of components")
    parts = cfs.split("/".join(value), allow_root=allow_root)
    if len(parts) != len(value):
        raise PathNotAllowed("a path component is empty, '.' or holds '/'")
    return parts


def _list(args: dict[str, Any], fds: list[int]) -> Result:
    return cfs.list_dir(fds[0], parts_of(args["path"])), []


def _mkdir(args: dict[str, Any], fds: list[int]) -> Result:
    cfs.make_dir(fds[0], parts_of(args["path"], allow_root=False))
    return None, []


def _usage(args: dict[str, Any], fds: list[int]) -> Result:
    return list(cfs.usage(fds[0])), []


def _remove(args: dict[str, Any], fds: list[int]) -> Result:
    """Every path checked first, so a bad one deletes none."""
    paths = [parts_of(p, allow_root=False) for p in args["paths"]]
    for parts in paths:
        cfs.check_removable(fds[0], parts, bool(args.get("recursive")))
    for parts in paths:
        with contextlib.suppress(PathNotFound):  # gone with an earlier path ("d", "d/x")
            cfs.remove(fds[0], parts, True)
    return None, []


def _clear(args: dict[str, Any], fds: list[int]) -> Result:
    cfs.clear_dir(fds[0])
    return None, []


def _create(args: dict[str, Any], fds: list[int]) -> Result:
    """A new empty file owned by the worker's uid, returned open for writing."""
    parts = parts_of(args["path"], allow_root=False)
    with cfs.translated(parts), cfs.parent_of(fds[0], parts) as parent:
        return None, [os.open(parts[-1], CREATE_FLAGS, 0o644, dir_fd=parent)]


def _close_all_but(keep: set[int]) -> None:
    for name in os.listdir("/proc/self/fd"):
        if int(name) not in keep:
            with contextlib.suppress(OSError):
                os.close(int(name))


def _spawn_stream(root: int, parts: cfs.Parts, members: list[ctar.Member]) -> int:
    """A child process writing the tar into a pipe; returns the pipe's read end. The
    child keeps only the root and the pipe, so closing the read end (a client gone)
    ends it with EPIPE."""
    r, w = os.pipe2(os.O_CLOEXEC)
    if os.fork() == 0:  # the worker is single-threaded
        code = 1
        try:
            signal.signal(signal.SIGPIPE, signal.SIG_IGN)
            _close_all_but({0, 1, 2, root, w})
            ctar.stream(root, parts, members, w)
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    return r


def _open(args: dict[str, Any], fds: list[int]) -> Result:
    """Per path: a regular file's descriptor, or a pipe streaming a directory's tar.
    Everything is opened before anything is returned."""
    out: list[int] = []
    info: list[dict[str, Any]] = []
    try:
        for raw in args["paths"]:
            parts = parts_of(raw, allow_root=False)
            fd = cfs.open_read(fds[0], parts)
            if not stat.S_ISDIR(os.fstat(fd).st_mode):
                out.append(fd)
                info.append({"kind": "file", "size": os.fstat(fd).st_size})
                continue
            os.close(fd)
            members = ctar.plan(fds[0], parts)
            out.append(_spawn_stream(fds[0], parts, members))
            info.append({"kind": "tar", "size": ctar.archive_size(members),
                         "data_size": sum(m.size for m in members)})
    except BaseException:
        for fd in out:
            os.close(fd)
        raise
    return info, out


def _write_files(args: dict[str, Any], fds: list[int]) -> Result:
    items = [(parts_of(p, allow_root=False), d) for p, d in args["files"]]
    if not all(isinstance(d, bytes) for _, d in items):
        raise InvalidAPIParameters("file data must be bytes")
    for parts, data in items:
        cfs.write_file(fds[0], parts, data)
    return None, []


def _tar_file(args: dict[str, Any], fds: list[int]) -> Result:
    """One regular file (at most ``max_bytes``) as a tar holding it by its base name."""
    parts = parts_of(args["path"], allow_root=False)
    fd = cfs.open_read(fds[0], parts)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise InvalidAPIParameters(f"{cfs.show(parts)!r} is a directory, not a file")
        if st.st_size > args["max_bytes"]:
            raise ResourceLimitExceeded(
                f"{cfs.show(parts)!r} is larger than {args['max_bytes']} bytes")
        data = f.read(args["max_bytes"])
    info = tarfile.TarInfo(parts[-1])
    info.size, info.mtime, info.mode = len(data), int(st.st_mtime), stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue(), []


def _unpack(args: dict[str, Any], fds: list[int]) -> Result:
    """fds: staging root, archive. Extracts into a new directory ``dest`` of staging."""
    dest = parts_of(args["dest"], allow_root=False)
    cfs.make_dir(fds[0], dest)
    dest_fd = cfs.open_dir(fds[0], dest)
    try:
        files, dirs = ctar.unpack(fds[1], dest_fd, args["max_files"], args["max_bytes"])
    finally:
        os.close(dest_fd)
    return {"files": [list(p) for p in files], "dirs": [list(p) for p in dirs]}, []


def _check_parents(root: int, parts: cfs.Parts) -> None:
    for i in range(1, len(parts)):
        st = cfs.lstat_at(root, parts[:i])
        if st is None:
            return
        if not stat.S_ISDIR(st.st_mode):
            raise InvalidAPIParameters(f"{cfs.show(parts[:i])!r} exists and is not a directory")


def _plan_commit(folder: int, staging: int, files: list[tuple[cfs.Parts, cfs.Parts]],
                 dirs: list[cfs.Parts]) -> tuple[int, int]:
    count, size = cfs.usage(folder)
    for parts in dirs:
        _check_parents(folder, (*parts, "x"))
    for dest, staged in files:
        _check_parents(folder, dest)
        st = cfs.lstat_at(folder, dest)
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise InvalidAPIParameters(f"{cfs.show(dest)!r} is a directory in the folder")
        if st is not None:
            count, size = count - 1, size - st.st_size
        new = cfs.lstat_at(staging, staged)
        if new is None:
            raise PathNotFound(f"staged file {cfs.show(staged)!r} vanished")
        count, size = count + 1, size + new.st_size
    return count, size


def _commit(args: dict[str, Any], fds: list[int]) -> Result:
    """fds: folder, staging. Moves staged files into the folder, all or nothing:
    destinations and the folder's limits (after the move) are checked first."""
    files = [(parts_of(d, allow_root=False), parts_of(s, allow_root=False))
             for d, s in args["files"]]
    dirs = sorted(parts_of(d, allow_root=False) for d in args["dirs"])
    count, size = _plan_commit(fds[0], fds[1], files, dirs)
    if count > args["max_files"] or size > args["max_bytes"]:
        raise ResourceLimitExceeded(
            f"the folder would hold {count} files and {size} bytes; the limits are "
            f"{args['max_files']} files and {args['max_bytes']} bytes")
    for parts in dirs:
        cfs.make_dir(fds[0], parts)
    for dest, staged in files:
        if len(dest) > 1:
            cfs.make_dir(fds[0], dest[:-1])
        cfs.move(fds[1], staged, fds[0], dest)
    return [count, size], []


def _whoami(args: dict[str, Any], fds: list[int]) -> Result:
    return [os.getuid(), os.geteuid(), os.getgid(), os.getegid(), os.getgroups()], []


OPS: dict[str, Op] = {
    "list": _list, "mkdir": _mkdir, "usage": _usage, "remove": _remove, "clear": _clear,
    "create": _create, "open": _open, "write_files": _write_files, "tar_file": _tar_file,
    "unpack": _unpack, "commit": _commit, "whoami": _whoami,
}
