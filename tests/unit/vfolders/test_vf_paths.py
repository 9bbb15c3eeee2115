"""Names, paths and aliases a user gives are validated (resolving them confined is
tested in tests/unit/common/test_confined_fs.py)."""
from __future__ import annotations

from pathlib import PurePosixPath

import pytest

from common.errors import InvalidAPIParameters, VFolderPathNotAllowed
from manager.vfolders.paths import check_name, clean_relpath, parse_mounts


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
