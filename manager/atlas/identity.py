"""STUB for the jobs branch (h/jobs) until the accounts helper's identity.py lands: the
lead replaces this file with h/accounts' version (same signatures). Here only v4 HMAC
signatures identify an account (the keypair an ``atlas_accounts`` row names)."""
from __future__ import annotations

import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from aiohttp import web

from common.errors import AuthenticationFailed
from manager.api.auth import authenticate
from manager.api.keys import DB
from manager.db.tables import atlas_accounts


@dataclass(frozen=True)
class Account:
    id: uuid.UUID
    email: str
    nickname: str
    access_key: str


async def _by_access_key(app: web.Application, access_key: str) -> Account:
    async with app[DB].connect() as conn:
        row = (await conn.execute(sa.select(atlas_accounts).where(
            atlas_accounts.c.access_key == access_key))).first()
    if row is None:
        raise AuthenticationFailed("this keypair belongs to no account")
    return Account(row.id, row.email, row.nickname, row.access_key)


async def require_account(request: web.Request) -> Account:
    header = request.headers.get("Authorization", "")
    if not header.startswith("BackendAI "):
        raise AuthenticationFailed("Invalid Token information")
    keypair = await authenticate(request)
    return await _by_access_key(request.app, keypair.access_key)


async def account_from_token(app: web.Application, token: str) -> Account:
    raise AuthenticationFailed("Invalid Token information")
