"""Pure rules for names and paths a user gives: folder names, paths inside a folder,
mount aliases. No I/O: paths are resolved only by the confined-file worker
(``common.confined_fs``), relative to the folder's descriptor."""
from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

from common.confined_fs import split
from common.errors import InvalidAPIParameters, PathNotAllowed, VFolderPathNotAllowed

NAME = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9._-]*[a-zA-Z0-9])?$")  # as client 18.12.3 checks
MAX_NAME = 64
MAX_PATH = 4096
MAX_MOUNTS = 5
HOME = PurePosixPath("/home/work")
ROOT = PurePosixPath(".")


def check_name(value: Any, what: str = "name") -> str:
    """A folder name: 1-64 of ``A-Z a-z 0-9 . _ -``, alphanumeric at both ends."""
    if not isinstance(value, str):
        raise InvalidAPIParameters(f"'{what}' must be a string")
    if not value or len(value) > MAX_NAME or not NAME.match(value):
        raise InvalidAPIParameters(
            f"'{what}' must be 1-{MAX_NAME} characters of A-Z a-z 0-9 . _ - "
            "starting and ending with a letter or digit")
    return value


def clean_relpath(value: Any, *, allow_root: bool = True, what: str = "path") -> PurePosixPath:
    """A relative path inside a folder, normalised (``.`` and empty parts dropped).

    Absolute paths, ``..`` components, NUL bytes and over-long names are refused
    (the rule of :func:`common.confined_fs.split`, which the worker applies again).
    """
    try:
        parts = split(value, allow_root=allow_root, what=what)
    except PathNotAllowed as e:
        raise VFolderPathNotAllowed(str(e)) from None
    return PurePosixPath(*parts) if parts else ROOT


def parts_of(rel: PurePosixPath) -> list[str]:
    """``rel`` as the component list the confined-file worker takes."""
    return [] if rel == ROOT else list(rel.parts)


def parse_mount(value: Any) -> tuple[str, str]:
    """``name`` or ``name:alias`` → (name, target under /home/work)."""
    if not isinstance(value, str):
        raise InvalidAPIParameters("each of 'config.mounts' must be a string")
    name, sep, alias = value.partition(":")
    check_name(name, "config.mounts")
    if not sep:
        return name, str(HOME / name)
    if not alias or alias.startswith("/") or "\x00" in alias:
        raise InvalidAPIParameters(
            f"mount alias must be a non-empty path relative to {HOME}: {value!r}")
    parts = [p for p in alias.split("/") if p not in ("", ".")]
    if not parts or ".." in parts or len(alias) > MAX_PATH:
        raise InvalidAPIParameters(f"mount alias must stay inside {HOME}: {value!r}")
    return name, str(HOME.joinpath(*parts))


def parse_mounts(value: Any) -> list[tuple[str, str]]:
    """The creation config ``mounts`` list: at most 5, distinct names and targets."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidAPIParameters("'config.mounts' must be a list")
    if len(value) > MAX_MOUNTS:
        raise InvalidAPIParameters(f"at most {MAX_MOUNTS} virtual folders can be mounted")
    mounts = [parse_mount(v) for v in value]
    targets = [t for _, t in mounts]
    if len(set(targets)) != len(targets):
        raise InvalidAPIParameters("two mounts share the same target path")
    for t in targets:
        if any(o != t and PurePosixPath(t).is_relative_to(o) for o in targets):
            raise InvalidAPIParameters(f"mount target {t} is nested in another mount")
    if len({n for n, _ in mounts}) != len(mounts):
        raise InvalidAPIParameters("a virtual folder is mounted twice")
    return mounts
