"""Sharing a folder (seed 004 §2.15.10–13): the owner invites user ids with ``ro`` /
``rw`` / ``rd``; the invitee's keypair accepts (gaining that permission) or rejects;
the inviter may also withdraw a pending invitation."""
from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from common.errors import (
    InvalidAPIParameters,
    InvitationNotFound,
    VFolderAlreadyExists,
    VFolderNotFound,
    VFolderPermissionDenied,
)
from manager.db.tables import keypairs, vfolder_invitations, vfolder_permissions, vfolders
from manager.services.keypairs import KeypairInfo
from manager.vfolders import store
from manager.vfolders.store import Folder

inv = vfolder_invitations


def parse_id(value: Any) -> uuid.UUID:
    if not isinstance(value, str):
        raise InvalidAPIParameters("'inv_id' must be a string")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidAPIParameters(f"'inv_id' is not an invitation id: {value!r}") from None


async def _known_users(conn: AsyncConnection, user_ids: list[str]) -> set[str]:
    rows = await conn.execute(sa.select(keypairs.c.user_id).distinct()
                              .where(keypairs.c.user_id.in_(user_ids)))
    return {r.user_id for r in rows}


async def invite(engine: AsyncEngine, who: KeypairInfo, folder: Folder, perm: str,
                 user_ids: list[str]) -> list[str]:
    """Pending invitations for every known user not yet invited; returns their ids."""
    if not folder.is_owner:
        raise VFolderPermissionDenied("only the owner can invite others to a folder")
    invited = []
    async with engine.begin() as conn:
        known = await _known_users(conn, user_ids)
        for user_id in dict.fromkeys(user_ids):
            if user_id not in known or user_id == who.user_id:
                continue
            result = await conn.execute(pg_insert(inv).values(
                id=uuid.uuid4(), vfolder_id=folder.id, inviter=who.access_key,
                invitee=user_id, permission=perm, state="pending",
            ).on_conflict_do_nothing(index_elements=[inv.c.vfolder_id, inv.c.invitee],
                                     index_where=inv.c.state == "pending"))
            if result.rowcount:
                invited.append(user_id)
    return invited


def _item(row: Any) -> dict[str, Any]:
    return {"id": row.id.hex, "inviter": row.inviter_user, "inviter_access_key": row.inviter,
            "perm": row.permission, "permission": row.permission, "state": row.state,
            "vfolder_id": row.vfolder_id.hex, "vfolder_name": row.name,
            "numFiles": row.num_files, "created_at": row.created_at.isoformat()}


async def received(engine: AsyncEngine, who: KeypairInfo) -> list[dict[str, Any]]:
    """Pending invitations addressed to the caller's user id, oldest first."""
    query = (sa.select(inv, vfolders.c.name, vfolders.c.num_files,
                       keypairs.c.user_id.label("inviter_user"))
             .join(vfolders, vfolders.c.id == inv.c.vfolder_id)
             .join(keypairs, keypairs.c.access_key == inv.c.inviter)
             .where(inv.c.invitee == who.user_id, inv.c.state == "pending")
             .order_by(inv.c.created_at, inv.c.id))
    async with engine.connect() as conn:
        return [_item(r) for r in (await conn.execute(query)).all()]


async def _pending(conn: AsyncConnection, inv_id: uuid.UUID, *where: Any) -> Any:
    row = (await conn.execute(sa.select(inv).where(
        inv.c.id == inv_id, inv.c.state == "pending", *where).with_for_update())).first()
    if row is None:
        raise InvitationNotFound("no pending invitation with this id is addressed to you")
    return row


async def accept(engine: AsyncEngine, who: KeypairInfo, inv_id: uuid.UUID) -> str:
    async with engine.begin() as conn:
        row = await _pending(conn, inv_id, inv.c.invitee == who.user_id)
        folder = await store.by_id(conn, row.vfolder_id)
        try:
            await store.resolve(conn, who.access_key, folder.name)
        except VFolderNotFound:
            pass
        else:
            raise VFolderAlreadyExists(
                f"you already see a folder named {folder.name!r}; rename or delete it first")
        await conn.execute(pg_insert(vfolder_permissions).values(
            vfolder_id=row.vfolder_id, access_key=who.access_key, permission=row.permission,
        ).on_conflict_do_update(index_elements=["vfolder_id", "access_key"],
                                set_={"permission": row.permission}))
        await conn.execute(sa.update(inv).where(inv.c.id == inv_id).values(state="accepted"))
    return f"access to virtual folder {folder.name!r} granted ({row.permission})"


async def reject(engine: AsyncEngine, who: KeypairInfo, inv_id: uuid.UUID) -> str:
    async with engine.begin() as conn:
        await _pending(conn, inv_id, sa.or_(inv.c.invitee == who.user_id,
                                            inv.c.inviter == who.access_key))
        await conn.execute(sa.update(inv).where(inv.c.id == inv_id).values(state="rejected"))
    return "invitation rejected"
