"""One upload request, staged: plain file parts and unpacked tar archives land in a
staging directory (through the confined-file workers) and are committed all or
nothing under the folder's limits by :meth:`FolderStorage.commit`."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from common.errors import VFolderLimitExceeded
from manager.vfolders.paths import ROOT, parts_of
from manager.vfolders.storage import FolderStorage, Stage

TAR_TYPES = frozenset({"application/x-tar", "application/x-gtar"})


@dataclass(frozen=True, slots=True)
class Limits:
    max_files: int
    max_bytes: int


@dataclass(slots=True)
class Batch:
    """Files staged for one upload request: destination → staged path."""

    storage: FolderStorage
    stage: Stage
    limits: Limits
    files: dict[PurePosixPath, list[str]] = field(default_factory=dict)
    dirs: set[PurePosixPath] = field(default_factory=set)
    total: int = 0
    _seq: int = 0

    async def new_part(self) -> tuple[str, int]:
        """(staged name, descriptor open for writing) of a new staged file."""
        self._seq += 1
        name = f"p{self._seq}"
        return name, await self.storage.new_file(self.stage, name)

    def account(self, nbytes: int) -> None:
        self.total += nbytes
        if self.total > self.limits.max_bytes:
            raise VFolderLimitExceeded(
                f"the upload exceeds the folder size limit of {self.limits.max_bytes} bytes")

    def add_file(self, rel: PurePosixPath, staged: list[str]) -> None:
        self.files[rel] = staged
        if len(self.files) > self.limits.max_files:
            raise VFolderLimitExceeded(
                f"the upload exceeds the folder limit of {self.limits.max_files} files")

    async def add_tar(self, target: PurePosixPath, archive: int) -> None:
        """Unpack a staged archive (every member checked first) into ``target``."""
        self._seq += 1
        dest = f"t{self._seq}"
        files, dirs = await self.storage.unpack(
            self.stage, archive, dest, self.limits.max_files - len(self.files),
            max(self.limits.max_bytes - self.total, 0))
        if target != ROOT:
            self.dirs.add(target)
        for parts in dirs:
            self.dirs.add(target.joinpath(*parts))
        for parts in files:
            self.add_file(target.joinpath(*parts), [dest, *parts])

    def commit_args(self) -> tuple[list[list[Any]], list[list[str]]]:
        return ([[parts_of(rel), staged] for rel, staged in self.files.items()],
                [parts_of(rel) for rel in sorted(self.dirs)])
