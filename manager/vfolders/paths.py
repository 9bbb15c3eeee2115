"""Pure rules for names and paths a user gives: folder names, paths inside a folder,
mount aliases, tar members. Every user path is confined to its folder here.

No database, no aiohttp; the only I/O is ``os.path.realpath`` in :func:`confine`
(it must see symlinks a session may have planted inside a folder).
"""
from __future__ import annotations

import os
import re
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any

from common.errors import InvalidAPIParameters, VFolderPathNotAllowed

NAME = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9._-]*[a-zA-Z0-9])?$")  # as client 18.12.3 checks
MAX_NAME = 64
MAX_PATH = 4096
MAX_COMPONENT = 255
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

    Absolute paths, ``..`` components, NUL bytes and over-long names are refused.
    """
    if not isinstance(value, str):
        raise InvalidAPIParameters(f"'{what}' must be a string")
    if "\x00" in value or len(value) > MAX_PATH:
        raise VFolderPathNotAllowed(f"'{what}' contains NUL or is too long")
    if value.startswith("/"):
        raise VFolderPathNotAllowed(f"'{what}' must be relative to the folder: {value!r}")
    parts = [p for p in value.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise VFolderPathNotAllowed(f"'{what}' must not contain '..': {value!r}")
    if any(len(p.encode()) > MAX_COMPONENT for p in parts):
        raise VFolderPathNotAllowed(f"'{what}' has a component longer than {MAX_COMPONENT}")
    if not parts and not allow_root:
        raise VFolderPathNotAllowed(f"'{what}' must name something inside the folder")
    return PurePosixPath(*parts) if parts else ROOT


def is_inside(root: Path, path: str | Path) -> bool:
    root_s = str(root)
    path_s = str(path)
    return path_s == root_s or path_s.startswith(root_s.rstrip("/") + "/")


def confine(root: Path, rel: PurePosixPath, *, follow_final: bool = True) -> Path:
    """The real path of ``rel`` under ``root`` (itself a real path), or
    VFolderPathNotAllowed when it — through any symlink — leaves ``root``.

    ``follow_final=False`` resolves only the parent: the last component is returned
    as is (to delete or replace a symlink itself without touching its target).
    """
    target = root.joinpath(*rel.parts)
    if follow_final:
        real = Path(os.path.realpath(target))
    else:
        if rel == ROOT:
            raise VFolderPathNotAllowed("the folder root itself cannot be used here")
        real = Path(os.path.realpath(target.parent)) / target.name
    if not is_inside(root, real):
        raise VFolderPathNotAllowed(f"'{rel}' leads outside the folder")
    return real


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


def check_tar_member(member: tarfile.TarInfo) -> PurePosixPath:
    """A tar member's path, if it is a plain file or directory with a confined name."""
    if not (member.isfile() or member.isdir()):
        raise VFolderPathNotAllowed(
            f"tar member {member.name!r} is not a regular file or directory")
    return clean_relpath(member.name, allow_root=member.isdir(), what="tar member")
