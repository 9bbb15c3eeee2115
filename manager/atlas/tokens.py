"""Atlas bearer tokens: JWT HS256 (PyJWT) signed with the key in ``atlas.token_key_file``.

An access token lives 1 h and names the account (``sub``) and its sign-in (``sid``);
a refresh token lives 14 days and names the sign-in. ``typ`` keeps the two apart: a
token of one type is refused where the other is expected. Whether the sign-in is still
valid (not signed out) is the account service's check, not this module's.

The key file holds 32 random bytes, base64, mode 0600 (``python -m manager
gen-atlas-key PATH``); the JWT key and the e-mail confirmation key are derived from it
separately, so a value signed for one purpose is never valid for the other.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt

from common.config import ConfigError
from common.errors import AuthenticationFailed
from common.filemodes import require_private, write_new_key

ALGORITHM = "HS256"
ACCESS = "access"
REFRESH = "refresh"
ACCESS_TTL = timedelta(hours=1)
REFRESH_TTL = timedelta(days=14)
KEY_BYTES = 32
_REQUIRED = ["exp", "iat", "sid", "typ"]


@dataclass(frozen=True, slots=True)
class Claims:
    typ: str
    sign_in: uuid.UUID
    account: uuid.UUID
    expires: datetime


class TokenKey:
    """Issues and checks tokens; never logs or reprs the key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"the atlas token key must be {KEY_BYTES} bytes")
        self._jwt = hmac.new(key, b"kraken-atlas-jwt", hashlib.sha256).digest()
        self._mail = hmac.new(key, b"kraken-atlas-confirm-email", hashlib.sha256).digest()

    def __repr__(self) -> str:
        return "TokenKey(...)"

    def issue(self, typ: str, account: uuid.UUID, sign_in: uuid.UUID,
              now: datetime | None = None) -> str:
        now = now or datetime.now(UTC)
        ttl = ACCESS_TTL if typ == ACCESS else REFRESH_TTL
        claims = {"sub": str(account), "sid": str(sign_in), "typ": typ,
                  "iat": int(now.timestamp()), "exp": int((now + ttl).timestamp())}
        return jwt.encode(claims, self._jwt, algorithm=ALGORITHM)

    def verify(self, token: str, typ: str) -> Claims:
        """The claims of a well-signed, unexpired token of type ``typ``; else
        AuthenticationFailed (one message per cause, never the token)."""
        try:
            claims = jwt.decode(token, self._jwt, algorithms=[ALGORITHM],
                                options={"require": [*_REQUIRED, "sub"]})
        except jwt.ExpiredSignatureError:
            raise AuthenticationFailed(f"the {typ} token has expired") from None
        except jwt.PyJWTError:
            raise AuthenticationFailed(f"invalid {typ} token") from None
        if claims.get("typ") != typ:
            raise AuthenticationFailed(f"this is not an {typ} token"
                                       if typ == ACCESS else f"this is not a {typ} token")
        try:
            return Claims(typ, uuid.UUID(str(claims["sid"])), uuid.UUID(str(claims["sub"])),
                          datetime.fromtimestamp(int(claims["exp"]), UTC))
        except (ValueError, TypeError):
            raise AuthenticationFailed(f"invalid {typ} token") from None

    def confirmation(self, account: uuid.UUID, email: str) -> str:
        """The unguessable token of an e-mail confirmation link."""
        msg = f"{account}\n{email.lower()}".encode()
        return hmac.new(self._mail, msg, hashlib.sha256).hexdigest()

    def check_confirmation(self, account: uuid.UUID, email: str, token: str) -> bool:
        return hmac.compare_digest(self.confirmation(account, email).encode(),
                                   token.encode("utf-8", "replace"))


def generate(path: Path) -> Path:
    """Write a fresh key to ``path`` (mode 0600); refuse to overwrite an existing one."""
    return write_new_key(path, KEY_BYTES)


def load(path: Path) -> TokenKey:
    """The key of ``path``; ConfigError when unreadable, group/world readable or bad."""
    try:
        text = path.read_text().strip()
    except OSError as e:
        raise ConfigError(f"cannot read the atlas token key {path}: {e.strerror}") from None
    require_private(path, "atlas token key")
    try:
        return TokenKey(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError):
        raise ConfigError(f"{path} is not a base64 {KEY_BYTES}-byte atlas token key") from None
