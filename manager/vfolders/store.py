"""Virtual folder rows in PostgreSQL: lookups by what a keypair can see, inserts,
deletes and usage counters. Knows tables, not HTTP or files."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from common.errors import VFolderNotFound
from manager.db.tables import vfolder_permissions, vfolders

PERMISSIONS = ("ro", "rw", "rd")
OWNER_PERMISSION = "rd"


def permission_at_least(have: str, need: str) -> bool:
    return PERMISSIONS.index(have) >= PERMISSIONS.index(need)


@dataclass(frozen=True, slots=True)
class Folder:
    """A folder as one keypair sees it."""

    id: uuid.UUID
    name: str
    host: str
    owner: str
    created_at: datetime
    max_files: int
    max_size_mib: int
    num_files: int
    cur_size: int
    is_owner: bool
    permission: str

    def list_item(self) -> dict[str, Any]:
        return {"name": self.name, "id": self.id.hex, "host": self.host,
                "is_owner": self.is_owner, "permission": self.permission}

    def item(self) -> dict[str, Any]:
        return {**self.list_item(), "linked": False, "numFiles": self.num_files,
                "created": self.created_at.isoformat(), "cur_size": self.cur_size,
                "max_files": self.max_files, "max_size": self.max_size_mib}


_COLS = [vfolders.c.id, vfolders.c.name, vfolders.c.host, vfolders.c.owner,
         vfolders.c.created_at, vfolders.c.max_files, vfolders.c.max_size,
         vfolders.c.num_files, vfolders.c.cur_size]


def _visible_query(access_key: str) -> sa.Select[Any]:
    perm = vfolder_permissions
    joined = vfolders.outerjoin(perm, sa.and_(perm.c.vfolder_id == vfolders.c.id,
                                              perm.c.access_key == access_key))
    return (sa.select(*_COLS, perm.c.permission).select_from(joined)
            .where(sa.or_(vfolders.c.owner == access_key, perm.c.access_key.is_not(None))))


def _folder(row: Any, access_key: str) -> Folder:
    is_owner = row.owner == access_key
    return Folder(row.id, row.name, row.host, row.owner, row.created_at, row.max_files,
                  row.max_size, row.num_files, row.cur_size, is_owner,
                  OWNER_PERMISSION if is_owner else row.permission)


async def visible(conn: AsyncConnection, access_key: str) -> list[Folder]:
    """Folders the keypair owns, then those shared with it, each by name."""
    rows = (await conn.execute(_visible_query(access_key))).all()
    folders = [_folder(r, access_key) for r in rows]
    return sorted(folders, key=lambda f: (not f.is_owner, f.name, f.id.hex))


async def resolve(conn: AsyncConnection, access_key: str, name: str,
                  *, lock: bool = False) -> Folder:
    """The folder called ``name`` for this keypair (its own first), else 404."""
    query = _visible_query(access_key).where(vfolders.c.name == name)
    if lock:
        query = query.with_for_update(of=vfolders)
    rows = (await conn.execute(query)).all()
    if not rows:
        raise VFolderNotFound(f"no virtual folder {name!r} is visible to you")
    folders = sorted((_folder(r, access_key) for r in rows), key=lambda f: not f.is_owner)
    return folders[0]


async def by_id(conn: AsyncConnection, folder_id: uuid.UUID) -> Any:
    row = (await conn.execute(sa.select(*_COLS).where(vfolders.c.id == folder_id))).first()
    if row is None:
        raise VFolderNotFound("the virtual folder no longer exists")
    return row


async def count_owned(conn: AsyncConnection, access_key: str) -> int:
    return int((await conn.execute(sa.select(sa.func.count()).select_from(vfolders)
                                   .where(vfolders.c.owner == access_key))).scalar_one())


async def insert(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(sa.insert(vfolders).values(**values))


async def delete(conn: AsyncConnection, folder_id: uuid.UUID) -> None:
    await conn.execute(sa.delete(vfolders).where(vfolders.c.id == folder_id))


async def set_usage(conn: AsyncConnection, folder_id: uuid.UUID, files: int, size: int
                    ) -> None:
    await conn.execute(sa.update(vfolders).where(vfolders.c.id == folder_id).values(
        num_files=files, cur_size=size, last_used=sa.func.now()))


async def grant(conn: AsyncConnection, folder_id: uuid.UUID, access_key: str,
                permission: str) -> None:
    await conn.execute(sa.insert(vfolder_permissions).values(
        vfolder_id=folder_id, access_key=access_key, permission=permission))
