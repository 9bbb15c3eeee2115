"""Who is calling an atlas route: THE interface other atlas modules build on.

``require_account(request)`` accepts ``Authorization: Bearer <access token>`` (also the
doubled ``Bearer Bearer <token>`` that seed 000's tutorial shows inside the token
value), or a request the manager's HMAC middleware already authenticated whose keypair
belongs to an account. Anything else raises AuthenticationFailed (401 problem).
``account_from_token(app, token)`` is the same check for a token from a query parameter
(browsers cannot set headers on a WebSocket).
"""
from __future__ import annotations

import uuid

from aiohttp import web

from common.errors import AuthenticationFailed
from manager.api.auth import KEYPAIR
from manager.atlas.account import Account
from manager.atlas.accounts import accounts_of

__all__ = ["ACCOUNT", "SIGN_IN", "Account", "account_from_token", "bearer_token",
           "require_account"]

ACCOUNT = web.RequestKey("kraken.atlas.account", Account)  # set by require_account
SIGN_IN = web.RequestKey("kraken.atlas.sign_in", uuid.UUID)  # the Bearer token's sign-in
_MAX_TOKEN = 4096


def bearer_token(header: str | None) -> str | None:
    """The token of ``Bearer <token>`` (one repeated ``Bearer`` tolerated), else None."""
    if not header:
        return None
    words = header.split()
    for _ in range(2):
        if len(words) > 1 and words[0].lower() == "bearer":
            words = words[1:]
        else:
            break
    if len(words) != 1 or len(words[0]) > _MAX_TOKEN or words[0].lower() == "bearer":
        return None
    if header.split()[0].lower() != "bearer":
        return None
    return words[0]


async def account_from_token(app: web.Application, token: str) -> Account:
    """The account of a valid access token whose sign-in is live; else 401."""
    token = bearer_token(token if token.lower().startswith("bearer") else
                         f"Bearer {token}") or ""
    if not token:
        raise AuthenticationFailed("missing access token")
    return await accounts_of(app).authenticate(token)


async def require_account(request: web.Request) -> Account:
    """The calling account (Bearer access token or an account's HMAC keypair); else 401."""
    known = request.get(ACCOUNT)
    if known is not None:
        return known
    service = accounts_of(request.app)
    keypair = request.get(KEYPAIR)
    if keypair is not None:
        account = await service.by_access_key(keypair.access_key)
        if account is None:
            raise AuthenticationFailed("this keypair belongs to no atlas account")
    else:
        header = request.headers.get("Authorization")
        token = bearer_token(header)
        if token is None:
            raise AuthenticationFailed("missing or malformed Authorization header "
                                       "(expected: Bearer <accessToken>)")
        account, request[SIGN_IN] = await service.sign_in_of(token)
    request[ACCOUNT] = account
    return account
