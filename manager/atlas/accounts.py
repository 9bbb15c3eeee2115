"""Atlas accounts (seed 000 §2): sign-up, e-mail confirmation, sign-in and sign-out,
refresh, password change and reset, withdrawal.

Each account owns a keypair, made in the same transaction as the account row, so its
jobs can also be reached with HMAC signing. Sign-up keeps its transaction open while the
confirmation mail is handed to the SMTP server: a mail that cannot be sent rolls the
account and its keypair back (nothing half-made), and a concurrent sign-up of the same
address waits on the unique e-mail index, then gets 409 (or wins if the first failed).
A reset-password stores a temporary password beside the password (1 hour); the old one
keeps working until the temporary one is used. Withdrawal runs the ``on_delete`` hooks
(the jobs service removes jobs and the ``atlas`` folder there), then removes the account,
its sign-ins and its keypair in one transaction.
"""
from __future__ import annotations

import logging
import re
import unicodedata
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from common.errors import (
    AccountNotFound,
    AuthenticationFailed,
    EmailAlreadyRegistered,
    EmailNotVerified,
    InvalidAPIParameters,
    ServiceUnavailable,
)
from manager.api.console_throttle import SIGNIN, SignInThrottle
from manager.api.keys import CONFIG, DB, KEYPAIRS
from manager.atlas import passwords, tokens
from manager.atlas.account import Account
from manager.atlas.mail import Mailer
from manager.atlas.tokens import ACCESS, REFRESH, REFRESH_TTL, TokenKey
from manager.config import AtlasConfig
from manager.db.tables import atlas_accounts, atlas_sign_ins
from manager.secretbox import SecretBox
from manager.services.keypairs import create_keypair, retire_keypair

log = logging.getLogger(__name__)

TEMP_PASSWORD_TTL = timedelta(hours=1)
MAX_EMAIL = 320
MAX_NICKNAME = 64
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s.]+$")

DeleteHook = Callable[[Account], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class TokenPair:
    access: str
    refresh: str


def normal_email(value: object) -> str:
    """The address lower-cased and trimmed; InvalidAPIParameters when it is not one."""
    if not isinstance(value, str):
        raise InvalidAPIParameters("email must be a string")
    email = value.strip().lower()
    if len(email) > MAX_EMAIL or not email.isprintable() or not _EMAIL.match(email):
        raise InvalidAPIParameters("email is not a valid email address")
    return email


def normal_nickname(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidAPIParameters("nickname must be a string")
    nickname = value.strip()
    if not 1 <= len(nickname) <= MAX_NICKNAME:
        raise InvalidAPIParameters(f"nickname must be 1-{MAX_NICKNAME} characters")
    if any(unicodedata.category(c).startswith("C") for c in nickname):
        raise InvalidAPIParameters("nickname must not contain control characters")
    return nickname


class AccountService:
    """The accounts of one manager replica (all state is in PostgreSQL)."""

    def __init__(self, engine: AsyncEngine, box: SecretBox, config: AtlasConfig,
                 token_key: TokenKey, throttle: SignInThrottle | None = None,
                 hasher: passwords.Passwords | None = None,
                 mailer: Mailer | None = None) -> None:
        self._engine = engine
        self._box = box
        self._config = config
        self.tokens = token_key
        self._throttle = throttle
        self.passwords = hasher or passwords.Passwords()
        self.mailer = mailer or Mailer(config)
        # called with the account before its row goes (the jobs service registers one)
        self.on_delete: list[DeleteHook] = []

    # ---- who is calling ------------------------------------------------------------------

    async def authenticate(self, token: str) -> Account:
        """The account of a valid access token whose sign-in is live; else 401."""
        return (await self.sign_in_of(token))[0]

    async def sign_in_of(self, token: str) -> tuple[Account, uuid.UUID]:
        claims = self.tokens.verify(token, ACCESS)
        query = sa.select(atlas_accounts).join(
            atlas_sign_ins, atlas_sign_ins.c.account_id == atlas_accounts.c.id).where(
            atlas_sign_ins.c.id == claims.sign_in, atlas_accounts.c.id == claims.account,
            *_live())
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise AuthenticationFailed("this sign-in has ended (signed out, password "
                                       "changed or account withdrawn)")
        return Account.from_row(row), claims.sign_in

    async def by_access_key(self, access_key: str) -> Account | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(atlas_accounts).where(
                atlas_accounts.c.access_key == access_key))).first()
        return Account.from_row(row) if row is not None else None

    async def get(self, account_id: uuid.UUID) -> Account | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(atlas_accounts).where(
                atlas_accounts.c.id == account_id))).first()
        return Account.from_row(row) if row is not None else None

    # ---- sign-up and e-mail confirmation ---------------------------------------------------

    async def sign_up(self, email: object, password: object, nickname: object) -> Account:
        address, name = normal_email(email), normal_nickname(nickname)
        secret = passwords.check(password)
        password_hash = await self.passwords.hash(secret)
        account_id = uuid.uuid4()
        async with self._engine.connect() as conn:
            async with conn.begin():
                if await _exists(conn, address):
                    raise EmailAlreadyRegistered("this email is already registered")
                keypair = await create_keypair(self._engine, box=self._box,
                                               user_id=address, conn=conn)
                try:
                    async with conn.begin_nested():
                        await conn.execute(sa.insert(atlas_accounts).values(
                            id=account_id, email=address, nickname=name,
                            password_hash=password_hash, access_key=keypair.access_key))
                except IntegrityError:  # a concurrent sign-up of the address committed
                    raise EmailAlreadyRegistered("this email is already registered") from None
                # still inside the transaction: a mail that fails leaves nothing behind
                await self.mailer.send_confirmation(
                    account_id, address, name, self.tokens.confirmation(account_id, address))
        log.info("atlas account %s signed up", account_id)
        return Account(account_id, address, name, keypair.access_key)

    async def resend_confirmation(self, email: object) -> None:
        address = normal_email(email)
        row = await self._by_email(address)
        if row is None:
            raise AccountNotFound("no member with this email")
        if row.email_verified_at is not None:
            return  # nothing to confirm; answering the same keeps the seed's contract
        await self.mailer.send_confirmation(row.id, row.email, row.nickname,
                                            self.tokens.confirmation(row.id, row.email))

    async def confirm_email(self, email: str | None, user_id: str | None,
                            token: str | None) -> None:
        failed = InvalidAPIParameters("email authentication failed (the link is invalid)")
        if not email or not user_id or not token:
            raise failed
        try:
            account_id = uuid.UUID(user_id)
            address = normal_email(email)
        except (ValueError, InvalidAPIParameters):
            raise failed from None
        if not self.tokens.check_confirmation(account_id, address, token):
            raise failed
        async with self._engine.begin() as conn:
            result = await conn.execute(sa.update(atlas_accounts).where(
                atlas_accounts.c.id == account_id, atlas_accounts.c.email == address).values(
                email_verified_at=sa.func.coalesce(atlas_accounts.c.email_verified_at,
                                                   sa.func.now())))
        if not result.rowcount:
            raise failed

    # ---- sign-in, refresh, sign-out --------------------------------------------------------

    async def sign_in(self, email: object, password: object, ip: str) -> TokenPair:
        address = normal_email(email)
        if not isinstance(password, str) or not password:
            raise InvalidAPIParameters("password must be a non-empty string")
        if len(password) > passwords.MAX_LENGTH:
            raise AuthenticationFailed("wrong email or password")
        throttle_key = "atlas:" + address
        if self._throttle is not None:
            await self._throttle.reserve(throttle_key, ip)
        row = await self._by_email(address)
        ok, rehash = await self.passwords.verify(row.password_hash if row else None, password)
        used_temporary = False
        if not ok and row is not None and row.temp_password_hash is not None and \
                row.temp_password_expires_at > datetime.now(UTC):
            used_temporary, _ = await self.passwords.verify(row.temp_password_hash, password)
            ok = used_temporary
        if not ok or row is None:
            raise AuthenticationFailed("wrong email or password")
        if self._throttle is not None:
            await self._throttle.succeeded(throttle_key, ip)
        # a temporary password came by mail: using it proves the address too
        if self._config.require_verified_email and row.email_verified_at is None and \
                not used_temporary:
            raise EmailNotVerified("confirm your email address first (the link in the mail; "
                                   "POST auth/confirmation-emails/resend sends another)")
        sign_in = uuid.uuid4()
        now = datetime.now(UTC)
        async with self._engine.begin() as conn:
            changes: dict[str, Any] = {}
            if used_temporary:  # the temporary password becomes the password
                changes = {"password_hash": row.temp_password_hash, "temp_password_hash": None,
                           "temp_password_expires_at": None, "email_verified_at": sa.func.coalesce(
                               atlas_accounts.c.email_verified_at, sa.func.now())}
            elif rehash is not None:
                changes = {"password_hash": rehash}
            if changes:
                await conn.execute(sa.update(atlas_accounts).where(
                    atlas_accounts.c.id == row.id).values(**changes))
            await conn.execute(sa.insert(atlas_sign_ins).values(
                id=sign_in, account_id=row.id, expires_at=now + REFRESH_TTL))
        return TokenPair(self.tokens.issue(ACCESS, row.id, sign_in, now),
                         self.tokens.issue(REFRESH, row.id, sign_in, now))

    async def refresh(self, token: str) -> str:
        claims = self.tokens.verify(token, REFRESH)
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(atlas_sign_ins.c.id).where(
                atlas_sign_ins.c.id == claims.sign_in,
                atlas_sign_ins.c.account_id == claims.account, *_live()))).first()
        if row is None:
            raise AuthenticationFailed("this sign-in has ended; sign in again")
        return self.tokens.issue(ACCESS, claims.account, claims.sign_in)

    async def sign_out(self, sign_in: uuid.UUID) -> None:
        async with self._engine.begin() as conn:
            result = await conn.execute(sa.update(atlas_sign_ins).where(
                atlas_sign_ins.c.id == sign_in, atlas_sign_ins.c.revoked_at.is_(None)).values(
                revoked_at=sa.func.now()))
        if not result.rowcount:
            raise AuthenticationFailed("this sign-in has already ended")

    # ---- passwords ----------------------------------------------------------------------

    async def change_password(self, account: Account, password: object,
                              keep: uuid.UUID | None) -> None:
        """New password; every sign-in but ``keep`` (the caller's) ends."""
        password_hash = await self.passwords.hash(passwords.check(password))
        async with self._engine.begin() as conn:
            result = await conn.execute(sa.update(atlas_accounts).where(
                atlas_accounts.c.id == account.id).values(
                password_hash=password_hash, temp_password_hash=None,
                temp_password_expires_at=None))
            if not result.rowcount:
                raise AccountNotFound("the account no longer exists")
            others = [atlas_sign_ins.c.id != keep] if keep is not None else []
            await conn.execute(sa.update(atlas_sign_ins).where(
                atlas_sign_ins.c.account_id == account.id,
                atlas_sign_ins.c.revoked_at.is_(None), *others).values(
                revoked_at=sa.func.now()))

    async def reset_password(self, email: object) -> None:
        """Mail a temporary password (1 hour); the old one works until it is used."""
        address = normal_email(email)
        row = await self._by_email(address)
        if row is None:
            raise AccountNotFound("no member with this email")
        temporary = passwords.temporary()
        temp_hash = await self.passwords.hash(temporary)
        async with self._engine.begin() as conn:
            result = await conn.execute(sa.update(atlas_accounts).where(
                atlas_accounts.c.id == row.id).values(
                temp_password_hash=temp_hash,
                temp_password_expires_at=sa.func.now() + TEMP_PASSWORD_TTL))
            if not result.rowcount:
                raise AccountNotFound("no member with this email")
            # inside the transaction: an unsent mail leaves the previous state
            await self.mailer.send_temporary_password(
                row.email, row.nickname, temporary, int(TEMP_PASSWORD_TTL.total_seconds() // 60))

    # ---- withdrawal -----------------------------------------------------------------------

    async def delete(self, account: Account) -> None:
        """Run the on_delete hooks, then remove the account, its sign-ins and keypair."""
        for hook in self.on_delete:
            await hook(account)
        async with self._engine.begin() as conn:
            result = await conn.execute(sa.delete(atlas_accounts).where(
                atlas_accounts.c.id == account.id))
            if not result.rowcount:
                raise AccountNotFound("the account no longer exists")
            await retire_keypair(conn, account.access_key)
        log.info("atlas account %s withdrew", account.id)

    async def _by_email(self, address: str) -> Any:
        async with self._engine.connect() as conn:
            return (await conn.execute(sa.select(atlas_accounts).where(
                atlas_accounts.c.email == address))).first()


async def _exists(conn: AsyncConnection, address: str) -> bool:
    return (await conn.execute(sa.select(atlas_accounts.c.id).where(
        atlas_accounts.c.email == address))).first() is not None


def _live() -> list[Any]:
    return [atlas_sign_ins.c.revoked_at.is_(None), atlas_sign_ins.c.expires_at > sa.func.now()]


ACCOUNTS = web.AppKey("kraken.atlas.accounts", AccountService)


def accounts_of(app: web.Application) -> AccountService:
    """The app's account service; 503 when atlas is not configured."""
    service = app.get(ACCOUNTS)
    if service is None:
        raise ServiceUnavailable("atlas is not configured on this manager "
                                 "(set atlas.token_key_file; docs/atlas.md)")
    return service


async def atlas_accounts_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx (after the database and the console's sign-in throttle)."""
    config = app[CONFIG].atlas
    if config.token_key_file is None:
        log.info("atlas is off: atlas.token_key_file is not set")
        yield
        return
    app[ACCOUNTS] = AccountService(app[DB], app[KEYPAIRS].box, config,
                                   tokens.load(config.token_key_file), app.get(SIGNIN))
    yield
