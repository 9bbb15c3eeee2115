"""Names, paths, aliases and tar members a user gives are validated and confined."""
from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path, PurePosixPath

import pytest

from common.errors import InvalidAPIParameters, VFolderPathNotAllowed
from manager.vfolders.paths import (
    check_name,
    check_tar_member,
    clean_relpath,
    confine,
    parse_mounts,
)


@pytest.mark.parametrize("name", ["a", "data", "my.data-1_x", "A" * 64])
def test_good_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "-a", "a-", ".a", "a b", "a/b", "..", "A" * 65, 3,
                                  None, "a:b", "é"])
def test_bad_names(name: object) -> None:
    with pytest.raises(InvalidAPIParameters):
        check_name(name)


def test_relpaths_normalise() -> None:
    assert clean_relpath("a/./b//c/") == PurePosixPath("a/b/c")
    assert clean_relpath(".") == PurePosixPath(".")
    assert clean_relpath("") == PurePosixPath(".")


@pytest.mark.parametrize("path", ["/etc/passwd", "../x", "a/../../x", "a/..", "a\x00b",
                                  "x" * 300, "/"])
def test_relpaths_refused(path: str) -> None:
    with pytest.raises(VFolderPathNotAllowed):
        clean_relpath(path)


def test_relpath_type_and_root() -> None:
    with pytest.raises(InvalidAPIParameters):
        clean_relpath(["a"])
    with pytest.raises(VFolderPathNotAllowed):
        clean_relpath(".", allow_root=False)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "folder"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "f.txt").write_text("x")
    (tmp_path / "secret").write_text("s")
    os.symlink(tmp_path / "secret", root / "out-link")
    os.symlink("/etc", root / "etc-link")
    os.symlink("sub/f.txt", root / "in-link")
    return Path(os.path.realpath(root))


def test_confine_inside(tree: Path) -> None:
    assert confine(tree, PurePosixPath("sub/f.txt")) == tree / "sub" / "f.txt"
    assert confine(tree, PurePosixPath("in-link")) == tree / "sub" / "f.txt"
    assert confine(tree, PurePosixPath(".")) == tree


@pytest.mark.parametrize("rel", ["out-link", "etc-link", "etc-link/passwd"])
def test_confine_refuses_symlinks_out(tree: Path, rel: str) -> None:
    with pytest.raises(VFolderPathNotAllowed):
        confine(tree, PurePosixPath(rel))


def test_confine_without_following_keeps_the_link(tree: Path) -> None:
    assert confine(tree, PurePosixPath("out-link"), follow_final=False) == tree / "out-link"
    with pytest.raises(VFolderPathNotAllowed):
        confine(tree, PurePosixPath("etc-link/passwd"), follow_final=False)
    with pytest.raises(VFolderPathNotAllowed):
        confine(tree, PurePosixPath("."), follow_final=False)


def test_sibling_prefix_is_outside(tmp_path: Path) -> None:
    (tmp_path / "ab").mkdir()
    (tmp_path / "abc").mkdir()
    os.symlink(tmp_path / "abc", tmp_path / "ab" / "l")
    with pytest.raises(VFolderPathNotAllowed):
        confine(tmp_path / "ab", PurePosixPath("l"))


def test_mounts() -> None:
    assert parse_mounts(None) == []
    assert parse_mounts(["d", "e:x/y", "f:./z/"]) == [
        ("d", "/home/work/d"), ("e", "/home/work/x/y"), ("f", "/home/work/z")]


@pytest.mark.parametrize("mounts", [
    "d", ["d"] * 2, ["a", "b", "c", "d", "e", "f"], ["d:"], ["d:/abs"], ["d:../x"],
    ["d:a/../../x"], ["a:x", "b:x"], ["a", "b:a"], ["a:x", "b:x/y"], [3], ["bad name"],
    ["d:."],
])
def test_bad_mounts(mounts: object) -> None:
    with pytest.raises(InvalidAPIParameters):
        parse_mounts(mounts)


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


def test_tar_members() -> None:
    assert check_tar_member(_member("a/b.txt")) == PurePosixPath("a/b.txt")
    assert check_tar_member(_member("./", tarfile.DIRTYPE)) == PurePosixPath(".")
    for bad in [_member("../x"), _member("/etc/x"), _member("a/../../x"),
                _member("l", tarfile.SYMTYPE, "/etc"), _member("h", tarfile.LNKTYPE, "x"),
                _member("dev", tarfile.CHRTYPE), _member(".")]:
        with pytest.raises(VFolderPathNotAllowed):
            check_tar_member(bad)


def test_tar_roundtrip_members_are_checked() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = b"hi"
        info = tarfile.TarInfo("ok.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        assert [str(check_tar_member(m)) for m in tar.getmembers()] == ["ok.txt"]
