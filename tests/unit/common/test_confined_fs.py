"""The confined-file module: every user path stays below its root descriptor, whatever
symlinks, FIFOs, sockets or devices a session planted; both resolvers (openat2 and the
O_NOFOLLOW walk) behave the same."""
from __future__ import annotations

import io
import os
import socket
import stat
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from common import confined_fs as cfs
from common import confined_ops as ops
from common import confined_tar as ctar
from common.errors import (
    InvalidAPIParameters,
    NotRegularFile,
    PathNotAllowed,
    PathNotFound,
    ResourceLimitExceeded,
)
from tests.tarballs import tar_bytes


@pytest.fixture(params=["openat2", "walk"])
def resolver(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "walk":
        monkeypatch.setattr(cfs, "has_openat2", lambda: False)
    else:
        assert cfs.has_openat2(), "this kernel (6.x) has openat2"
    return str(request.param)


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[tuple[Path, Path, int]]:
    """(root, outside, root fd): root holds a dir, files and links to outside."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "d" / "e").mkdir(parents=True)
    (root / "d" / "f.txt").write_text("inside")
    outside.mkdir()
    (outside / "secret").write_text("secret")
    (outside / "f.txt").write_text("secret")
    os.symlink(outside, root / "out")
    os.symlink(outside / "secret", root / "out-file")
    os.symlink("d", root / "in")  # even a link that stays inside is not followed
    os.symlink(outside, root / "d" / "e" / "deep-out")
    fd = os.open(root, cfs.DIR_FLAGS)
    yield root, outside, fd
    os.close(fd)


def _outside_unchanged(outside: Path) -> None:
    assert sorted(os.listdir(outside)) == ["f.txt", "secret"]
    assert (outside / "secret").read_text() == "secret"


@pytest.mark.parametrize("path", ["/etc/passwd", "../x", "a/../../x", "a/..", "a\x00b",
                                  "x" * 256, "a/" * 2100, "/"])
def test_split_refuses(path: str) -> None:
    with pytest.raises(PathNotAllowed):
        cfs.split(path)


def test_split_normalises_and_types() -> None:
    assert cfs.split("a/./b//c/") == ("a", "b", "c")
    assert cfs.split("") == () and cfs.split(".") == ()
    assert cfs.split("é" * 127) == ("é" * 127,)  # 254 bytes
    with pytest.raises(PathNotAllowed):
        cfs.split("é" * 128)  # 256 bytes
    with pytest.raises(PathNotAllowed):
        cfs.split(".", allow_root=False)
    with pytest.raises(InvalidAPIParameters):
        cfs.split(b"a")


@pytest.mark.parametrize("path", [("out",), ("out", "secret"), ("out-file",), ("in",),
                                  ("in", "f.txt"), ("d", "e", "deep-out"),
                                  ("d", "e", "deep-out", "secret")])
def test_symlinks_anywhere_are_refused(resolver: str, tree: tuple[Path, Path, int],
                                       path: tuple[str, ...]) -> None:
    root, outside, fd = tree
    for call in (lambda: cfs.open_read(fd, path), lambda: cfs.list_dir(fd, path),
                 lambda: cfs.make_dir(fd, (*path, "new")),
                 lambda: cfs.write_file(fd, (*path, "x"), b"pwned"),
                 lambda: cfs.write_file(fd, path, b"pwned")):
        with pytest.raises((PathNotAllowed, NotRegularFile)):
            call()
    _outside_unchanged(outside)


def test_inside_paths_work(resolver: str, tree: tuple[Path, Path, int]) -> None:
    root, outside, fd = tree
    cfs.write_file(fd, ("new", "deep", "g.txt"), b"hello")
    assert (root / "new" / "deep" / "g.txt").read_bytes() == b"hello"
    cfs.write_file(fd, ("new", "deep", "g.txt"), b"hi")  # overwritten in place
    assert (root / "new" / "deep" / "g.txt").read_bytes() == b"hi"
    with os.fdopen(cfs.open_read(fd, ("d", "f.txt")), "rb") as f:
        assert f.read() == b"inside"
    names = {e["filename"]: e["mode"][0] for e in cfs.list_dir(fd, ())}
    assert names == {"d": "d", "in": "l", "new": "d", "out": "l", "out-file": "l"}
    cfs.make_dir(fd, ("m", "n"))
    assert (root / "m" / "n").is_dir()
    with pytest.raises(PathNotFound):
        cfs.open_read(fd, ("missing",))
    with pytest.raises(PathNotAllowed):
        cfs.make_dir(fd, ("d", "f.txt", "x"))  # through a file
    _outside_unchanged(outside)


def test_remove_never_follows(resolver: str, tree: tuple[Path, Path, int]) -> None:
    root, outside, fd = tree
    cfs.remove(fd, ("out",), False)  # the link itself goes
    cfs.remove(fd, ("out-file",), False)
    assert not os.path.lexists(root / "out") and not os.path.lexists(root / "out-file")
    with pytest.raises(InvalidAPIParameters):
        cfs.remove(fd, ("d",), False)
    with pytest.raises(PathNotAllowed):
        cfs.remove(fd, ("in", "f.txt"), False)
    cfs.remove(fd, ("d",), True)  # holds d/e/deep-out → outside
    assert sorted(os.listdir(root)) == ["in"]
    with pytest.raises(PathNotFound):
        cfs.remove(fd, ("d",), True)
    _outside_unchanged(outside)


def test_usage_and_clear_stay_inside(tree: tuple[Path, Path, int]) -> None:
    root, outside, fd = tree
    count, size = cfs.usage(fd)
    assert count == 5 and size == len("inside") + sum(
        len(os.readlink(root / p)) for p in ("out", "out-file", "in", "d/e/deep-out"))
    cfs.clear_dir(fd)
    assert os.listdir(root) == []
    _outside_unchanged(outside)


def test_rename_over_a_symlink_replaces_the_link(tree: tuple[Path, Path, int],
                                                 tmp_path: Path) -> None:
    root, outside, fd = tree
    (tmp_path / "stage").mkdir()
    (tmp_path / "stage" / "p1").write_text("mine")
    sfd = os.open(tmp_path / "stage", cfs.DIR_FLAGS)
    try:
        cfs.move(sfd, ("p1",), fd, ("out-file",))
        with pytest.raises(PathNotAllowed):
            cfs.move(sfd, ("p1",), fd, ("out", "p1"))
    finally:
        os.close(sfd)
    assert (root / "out-file").read_text() == "mine" and not (root / "out-file").is_symlink()
    _outside_unchanged(outside)


def _specials(root: Path) -> list[str]:
    os.mkfifo(root / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "sock"))
    sock.close()
    names = ["fifo", "sock"]
    try:
        os.mknod(root / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        names.append("null")
    except PermissionError:  # not root: devices cannot be made, which is the point
        pass
    return names


def test_fifos_sockets_devices_are_refused_without_blocking(
        resolver: str, tree: tuple[Path, Path, int]) -> None:
    root, _, fd = tree
    started = time.monotonic()
    for name in _specials(root):
        with pytest.raises(NotRegularFile):
            cfs.open_read(fd, (name,))
        with pytest.raises((NotRegularFile, InvalidAPIParameters)):
            cfs.write_file(fd, (name,), b"x")
        with pytest.raises((NotRegularFile, InvalidAPIParameters)):
            ops.OPS["tar_file"]({"path": [name], "max_bytes": 10}, [fd])
    assert time.monotonic() - started < 5
    info, fds = ops.OPS["open"]({"paths": [["d"]]}, [fd])
    for f in fds:
        os.close(f)
    assert info[0]["kind"] == "tar"




@pytest.mark.parametrize("members", [
    [("../x", tarfile.REGTYPE, b"x")], [("/etc/x", tarfile.REGTYPE, b"x")],
    [("ok", tarfile.REGTYPE, b"x"), ("l", tarfile.SYMTYPE, b"/etc")],
    [("h", tarfile.LNKTYPE, b"/etc/passwd")], [("a/../../x", tarfile.REGTYPE, b"x")],
    [("dev", tarfile.CHRTYPE, b"")], [("fifo", tarfile.FIFOTYPE, b"")]])
def test_tar_members_with_links_are_refused(tmp_path: Path,
                                            members: list[tuple[str, bytes, bytes]]) -> None:
    (tmp_path / "archive").write_bytes(tar_bytes(members))
    (tmp_path / "dest").mkdir()
    archive = os.open(tmp_path / "archive", os.O_RDONLY)
    dest = os.open(tmp_path / "dest", cfs.DIR_FLAGS)
    try:
        with pytest.raises((PathNotAllowed, InvalidAPIParameters)):
            ctar.unpack(archive, dest, 10, 100)
    finally:
        os.close(archive)
        os.close(dest)
    assert os.listdir(tmp_path / "dest") == []


def test_tar_unpack_and_limits(tmp_path: Path) -> None:
    (tmp_path / "archive").write_bytes(tar_bytes([("a/b.txt", tarfile.REGTYPE, b"ab"),
                                                   ("c.txt", tarfile.REGTYPE, b"c")]))
    (tmp_path / "dest").mkdir()
    archive = os.open(tmp_path / "archive", os.O_RDONLY)
    dest = os.open(tmp_path / "dest", cfs.DIR_FLAGS)
    try:
        with pytest.raises(ResourceLimitExceeded):
            ctar.unpack(archive, dest, 1, 100)
        files, dirs = ctar.unpack(archive, dest, 10, 100)
    finally:
        os.close(archive)
        os.close(dest)
    assert files == [("a", "b.txt"), ("c.txt",)] and dirs == []
    assert (tmp_path / "dest" / "a" / "b.txt").read_bytes() == b"ab"


def _streamed(fd: int, members: list[ctar.Member]) -> bytes:
    """What :func:`ctar.stream` writes into a pipe, read by a thread."""
    r, w = os.pipe()
    chunks: list[bytes] = []
    reader = threading.Thread(
        target=lambda: chunks.extend(iter(lambda: os.read(r, 1 << 20), b"")))
    reader.start()
    try:
        ctar.stream(fd, ("d",), members, w)
    finally:
        os.close(w)
        reader.join()
        os.close(r)
    return b"".join(chunks)


def test_tar_stream_is_exact_and_leaves_links_out(tree: tuple[Path, Path, int]) -> None:
    root, _, fd = tree
    with open(root / "d" / "sparse", "wb") as f:
        f.truncate(8 << 20)  # counted at its apparent size, streamed without a temp file
    members = ctar.plan(fd, ("d",))
    data = _streamed(fd, members)
    assert len(data) == ctar.archive_size(members)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert sorted(tar.getnames()) == ["d", "d/e", "d/f.txt", "d/sparse"]
        assert tar.extractfile("d/f.txt").read() == b"inside"  # type: ignore[union-attr]
        assert tar.getmember("d/sparse").size == 8 << 20


def test_tar_stream_keeps_its_length_when_a_file_is_swapped(
        tree: tuple[Path, Path, int]) -> None:
    root, outside, fd = tree
    members = ctar.plan(fd, ("d",))
    os.rename(root / "d", root / "d-real")
    os.symlink(outside, root / "d")  # the attack: swap the directory after the plan
    data = _streamed(fd, members)
    assert len(data) == ctar.archive_size(members) and b"secret" not in data


def test_remove_op_checks_all_first_and_tolerates_overlap(tree: tuple[Path, Path, int]) -> None:
    root, outside, fd = tree
    with pytest.raises(PathNotFound):
        ops.OPS["remove"]({"paths": [["d", "f.txt"], ["missing"]], "recursive": False}, [fd])
    assert (root / "d" / "f.txt").exists()  # a bad path deletes none
    ops.OPS["remove"]({"paths": [["d"], ["d", "f.txt"]], "recursive": True}, [fd])
    assert not (root / "d").exists()
    _outside_unchanged(outside)
