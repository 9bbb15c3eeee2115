"""Atlas accounts (seed 000 §2) on the real app, PostgreSQL, Redis and a real SMTP server
(aiosmtpd) that captures the mails: the tests follow the link in the mail."""
from __future__ import annotations

import asyncio
import logging
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher

from common.errors import AuthenticationFailed
from manager.api.keys import KEYPAIRS
from manager.atlas import tokens
from manager.atlas.account import Account
from manager.atlas.accounts import ACCOUNTS
from manager.atlas.identity import account_from_token
from manager.atlas.mail import Mailer
from manager.atlas.passwords import Passwords
from manager.atlas.tokens import ACCESS
from manager.config import ManagerConfig
from manager.db.tables import atlas_accounts, atlas_sign_ins, keypairs
from tests.smtp_inbox import Inbox, free_port, running_inbox

from .conftest import Harness, make_manager_config, open_harness

pytestmark = pytest.mark.integration

PASSWORD = "Correct-horse-9"
SMTP_SECRET = "smtp-" + secrets.token_hex(8)


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    with running_inbox() as served:
        yield served


def _config(mgr_db_url: str, tmp_path: Path, smtp_port: int, **smtp: Any) -> ManagerConfig:
    key = tokens.generate(tmp_path / "atlas.key")
    return make_manager_config(mgr_db_url, tmp_path, atlas={
        "token_key_file": str(key), "public_url": "https://atlas.example",
        "smtp": {"host": "127.0.0.1", "port": smtp_port, "from_address": "atlas@example.com",
                 **smtp}})


@pytest.fixture
async def h(mgr_db_url: str, tmp_path: Path, inbox: tuple[Inbox, int]
            ) -> AsyncIterator[Harness]:
    async with open_harness(_config(mgr_db_url, tmp_path, inbox[1])) as harness:
        # cheap argon2 parameters: the real ones are for production, not the suite
        harness.app[ACCOUNTS].passwords = Passwords(
            PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
        yield harness


def _address() -> str:
    return f"user-{secrets.token_hex(4)}@example.com"


async def _req(h: Harness, method: str, path: str, body: Any = None,
               token: str | None = None, **headers: str) -> tuple[int, Any]:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = orjson.dumps(body) if body is not None else None
    if data is not None:
        headers["Content-Type"] = "application/json"
    resp = await h.client.request(method, path, data=data, headers=headers)
    raw = await resp.read()
    return resp.status, orjson.loads(raw) if raw else None


def _link(mail: Message) -> str:
    payload = mail.get_payload(decode=True)
    assert isinstance(payload, bytes)
    m = re.search(r"https://atlas\.example(/atlas/auth/confirm-email\?\S+)", payload.decode())
    assert m is not None, payload
    return m.group(1)


async def _sign_up(h: Harness, inbox: Inbox, address: str, confirm: bool = True) -> None:
    mails = len(inbox.to(address))
    status, _ = await _req(h, "POST", "/atlas/auth/sign-up",
                           {"email": address, "password": PASSWORD, "nickname": "Neo"})
    assert status == 201
    if confirm:
        status, _ = await _req(h, "GET", _link(await inbox.wait(address, mails + 1)))
        assert status == 200


async def _sign_in(h: Harness, address: str, password: str = PASSWORD) -> dict[str, str]:
    status, body = await _req(h, "POST", "/atlas/auth/sign-in",
                              {"id": address, "password": password})
    assert status == 201, body
    return body


def _problem(status: int, body: Any, expected: int) -> None:
    assert status == expected, body
    assert body["status"] == expected and body["message"] and body["type"]


async def test_sign_up_confirm_sign_in_refresh_sign_out(h: Harness, inbox: tuple[Inbox, int]
                                                        ) -> None:
    box, address = inbox[0], _address()
    status, body = await _req(h, "POST", "/krako/auth/sign-up",
                              {"email": address.upper(), "password": PASSWORD,
                               "nickname": "Neo"})
    assert status == 201 and uuid.UUID(body["userId"])
    mail = await box.wait(address)
    assert mail["From"] == "atlas@example.com" and PASSWORD not in mail.as_string()

    # before the link is followed: 403, and only to someone who knows the password
    _problem(*await _req(h, "POST", "/atlas/auth/sign-In",
                         {"id": address, "password": PASSWORD}), 403)
    _problem(*await _req(h, "POST", "/atlas/auth/sign-In",
                         {"id": address, "password": PASSWORD + "x"}), 401)

    link = _link(mail)
    parts = urlsplit(link)
    assert "userId=" + body["userId"] in parts.query and "token=" in parts.query
    # the seed's link without the signed token, or with another account's id, confirms nothing
    no_token = re.sub(r"&token=[0-9a-f]+", "", link)
    _problem(*await _req(h, "GET", no_token), 400)
    other = link.replace(body["userId"], str(uuid.uuid4()))
    _problem(*await _req(h, "GET", other), 400)
    assert (await _req(h, "GET", link))[0] == 200
    assert (await _req(h, "GET", link))[0] == 200  # following it twice is harmless

    pair = await _sign_in(h, address.title())
    status, me = await _req(h, "GET", "/krako/me", token=pair["accessToken"])
    assert status == 200 and me == {"nickname": "Neo", "email": address,
                                    "userId": body["userId"]}
    # the tutorial shows "Bearer ..." inside the token value: a doubled prefix works
    assert (await _req(h, "GET", "/atlas/me",
                       Authorization=f"Bearer Bearer {pair['accessToken']}"))[0] == 200

    status, fresh = await _req(h, "POST", "/atlas/refresh/accessToken",
                               token=pair["refreshToken"])
    assert status == 200 and (await _req(h, "GET", "/atlas/me",
                                         token=fresh["accessToken"]))[0] == 200
    # an access token where a refresh token is expected, and the reverse: 401
    _problem(*await _req(h, "POST", "/atlas/refresh/accessToken", token=pair["accessToken"]),
             401)
    _problem(*await _req(h, "GET", "/atlas/me", token=pair["refreshToken"]), 401)

    assert (await _req(h, "POST", "/atlas/auth/sign-out", token=pair["accessToken"]))[0] == 200
    # the sign-in is over: its access tokens (old and refreshed) and its refresh token die
    for token in (pair["accessToken"], fresh["accessToken"]):
        _problem(*await _req(h, "GET", "/atlas/me", token=token), 401)
    _problem(*await _req(h, "POST", "/atlas/refresh/accesstoken",
                         token=pair["refreshToken"]), 401)
    _problem(*await _req(h, "POST", "/atlas/auth/sign-out", token=pair["accessToken"]), 401)


async def test_invalid_sign_ups_and_duplicates(h: Harness, inbox: tuple[Inbox, int]) -> None:
    address = _address()
    for bad in ({"email": "not-an-email", "password": PASSWORD, "nickname": "n"},
                {"email": address, "password": "weakpassword", "nickname": "n"},
                {"email": address, "password": PASSWORD},
                {"email": address, "password": PASSWORD, "nickname": "x" * 65},
                {"email": "a@b.c\r\nBcc: victim@example.com", "password": PASSWORD,
                 "nickname": "n"},
                {"email": ["a@b.c"], "password": PASSWORD, "nickname": "n"}):
        _problem(*await _req(h, "POST", "/atlas/auth/sign-up", bad), 400)
    status, body = await _req(h, "POST", "/atlas/auth/sign-up",
                              {"email": address, "password": "weakpassword", "nickname": "n"})
    assert "upper-case" in body["message"] and "special" in body["message"]
    status, body = await h.client.post("/atlas/auth/sign-up", data=b"{nope"), None
    assert status.status == 400
    await _sign_up(h, inbox[0], address, confirm=False)
    _problem(*await _req(h, "POST", "/atlas/auth/sign-up",
                         {"email": address.upper(), "password": PASSWORD, "nickname": "B"}),
             409)
    assert inbox[0].to(address).__len__() == 1


async def test_concurrent_sign_ups_of_one_email_exactly_one_wins(
        h: Harness, inbox: tuple[Inbox, int]) -> None:
    address = _address()
    spellings = [address, address.upper(), address.title(), address, address.upper()]
    results = await asyncio.gather(*(
        _req(h, "POST", "/atlas/auth/sign-up",
             {"email": e, "password": PASSWORD, "nickname": f"n{i}"})
        for i, e in enumerate(spellings)))
    assert sorted(s for s, _ in results) == [201, 409, 409, 409, 409]
    async with h.engine.connect() as conn:
        rows = (await conn.execute(sa.select(atlas_accounts).where(
            atlas_accounts.c.email == address))).all()
        keys = (await conn.execute(sa.select(keypairs.c.access_key).where(
            keypairs.c.user_id == address))).all()
    assert len(rows) == 1 and [k.access_key for k in keys] == [rows[0].access_key]
    assert len(inbox[0].to(address)) == 1


async def test_wrong_credentials_and_throttling(h: Harness, inbox: tuple[Inbox, int]) -> None:
    address = _address()
    await _sign_up(h, inbox[0], address)
    _problem(*await _req(h, "POST", "/atlas/auth/sign-in",
                         {"id": _address(), "password": PASSWORD}), 401)
    status, body = await _req(h, "POST", "/atlas/auth/sign-in",
                              {"email": address, "password": "Wrong-pass-1"})
    _problem(status, body, 401)
    assert body["message"] == "wrong email or password"
    for _ in range(4):  # console.max_failures_per_key = 5 in a window
        assert (await _req(h, "POST", "/atlas/auth/sign-in",
                           {"id": address, "password": "Wrong-pass-1"}))[0] == 401
    resp = await h.client.post("/atlas/auth/sign-in",
                               json={"id": address, "password": PASSWORD})
    assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0


async def test_resend_confirmation(h: Harness, inbox: tuple[Inbox, int]) -> None:
    address = _address()
    await _sign_up(h, inbox[0], address, confirm=False)
    assert (await _req(h, "POST", "/atlas/auth/confirmation-emails/resend",
                       {"email": address}))[0] == 201
    second = await inbox[0].wait(address, 2)
    assert (await _req(h, "GET", _link(second)))[0] == 200
    await _sign_in(h, address)
    _problem(*await _req(h, "POST", "/atlas/auth/confirmation-emails/resend",
                         {"email": _address()}), 404)
    _problem(*await _req(h, "POST", "/atlas/auth/confirmation-emails/resend", {}), 400)


async def test_reset_password_mails_a_temporary_password(
        h: Harness, inbox: tuple[Inbox, int]) -> None:
    address = _address()
    await _sign_up(h, inbox[0], address)
    _problem(*await _req(h, "POST", "/atlas/auth/reset-password", {"email": _address()}), 404)
    assert (await _req(h, "POST", "/atlas/auth/reset-password", {"email": address}))[0] == 201
    body = (await inbox[0].wait(address, 2)).get_payload(decode=True)
    assert isinstance(body, bytes)
    temporary = body.decode().split("temporary password is:")[1].split()[0]
    await _sign_in(h, address)  # whoever asked for the reset cannot lock the owner out
    await _sign_in(h, address, temporary)  # the temporary one becomes the password
    _problem(*await _req(h, "POST", "/atlas/auth/sign-in",
                         {"id": address, "password": PASSWORD}), 401)
    await _sign_in(h, address, temporary)
    # an unconfirmed account: the mailed temporary password proves the address as well
    unconfirmed = _address()
    await _sign_up(h, inbox[0], unconfirmed, confirm=False)
    assert (await _req(h, "POST", "/atlas/auth/reset-password", {"email": unconfirmed}))[0] == 201
    body = (await inbox[0].wait(unconfirmed, 2)).get_payload(decode=True)
    assert isinstance(body, bytes)
    await _sign_in(h, unconfirmed, body.decode().split("temporary password is:")[1].split()[0])
    await _sign_in(h, unconfirmed, body.decode().split("temporary password is:")[1].split()[0])


async def test_change_password_keeps_only_the_callers_sign_in(
        h: Harness, inbox: tuple[Inbox, int]) -> None:
    address = _address()
    await _sign_up(h, inbox[0], address)
    mine, other = await _sign_in(h, address), await _sign_in(h, address)
    _problem(*await _req(h, "PATCH", "/atlas/auth/password", {"password": "short"},
                         token=mine["accessToken"]), 400)
    _problem(*await _req(h, "PATCH", "/atlas/auth/password", {"password": "New-pass-99"}), 401)
    assert (await _req(h, "PATCH", "/atlas/auth/password", {"password": "New-pass-99"},
                       token=mine["accessToken"]))[0] == 200
    assert (await _req(h, "GET", "/atlas/me", token=mine["accessToken"]))[0] == 200
    _problem(*await _req(h, "GET", "/atlas/me", token=other["accessToken"]), 401)
    _problem(*await _req(h, "POST", "/atlas/refresh/accessToken",
                         token=other["refreshToken"]), 401)
    await _sign_in(h, address, "New-pass-99")
    # the seed's table also says POST
    assert (await _req(h, "POST", "/krako/auth/password", {"password": "Newer-pass-99"},
                       token=mine["accessToken"]))[0] == 200
    await _sign_in(h, address, "Newer-pass-99")


async def test_delete_user_runs_hooks_then_removes_everything(
        h: Harness, inbox: tuple[Inbox, int]) -> None:
    address = _address()
    await _sign_up(h, inbox[0], address)
    pair = await _sign_in(h, address)
    seen: list[tuple[Account, int]] = []

    async def hook(account: Account) -> None:  # the row still exists while hooks run
        async with h.engine.connect() as conn:
            n = len((await conn.execute(sa.select(atlas_accounts).where(
                atlas_accounts.c.id == account.id))).all())
        seen.append((account, n))

    h.app[ACCOUNTS].on_delete.append(hook)
    _problem(*await _req(h, "DELETE", "/atlas/auth/user"), 401)
    assert (await _req(h, "DELETE", "/atlas/auth/user", token=pair["accessToken"]))[0] == 200
    assert len(seen) == 1 and seen[0][0].email == address and seen[0][1] == 1
    access_key = seen[0][0].access_key
    async with h.engine.connect() as conn:
        assert not (await conn.execute(sa.select(atlas_accounts).where(
            atlas_accounts.c.email == address))).all()
        assert not (await conn.execute(sa.select(atlas_sign_ins).where(
            atlas_sign_ins.c.account_id == seen[0][0].id))).all()
        assert not (await conn.execute(sa.select(keypairs).where(
            keypairs.c.access_key == access_key))).all()
    _problem(*await _req(h, "GET", "/atlas/me", token=pair["accessToken"]), 401)
    _problem(*await _req(h, "POST", "/atlas/auth/sign-in",
                         {"id": address, "password": PASSWORD}), 401)
    await _sign_up(h, inbox[0], address)  # the address is free again


async def test_tampered_expired_and_foreign_tokens(h: Harness, inbox: tuple[Inbox, int]
                                                   ) -> None:
    address = _address()
    await _sign_up(h, inbox[0], address)
    pair = await _sign_in(h, address)
    service = h.app[ACCOUNTS]
    claims = service.tokens.verify(pair["accessToken"], ACCESS)
    past = datetime.now(UTC) - timedelta(hours=1, seconds=5)
    expired = service.tokens.issue(ACCESS, claims.account, claims.sign_in, now=past)
    status, body = await _req(h, "GET", "/atlas/me", token=expired)
    _problem(status, body, 401)
    assert "expired" in body["message"]
    t = pair["accessToken"]
    for bad in (t[:-3] + ("abc" if not t.endswith("abc") else "xyz"), t + "x", "x.y.z",
                tokens.TokenKey(secrets.token_bytes(32)).issue(
                    ACCESS, claims.account, claims.sign_in)):
        _problem(*await _req(h, "GET", "/atlas/me", token=bad), 401)
    _problem(*await _req(h, "GET", "/atlas/me", Authorization="Basic abc"), 401)
    _problem(*await _req(h, "GET", "/atlas/me"), 401)


async def test_hmac_signed_requests_of_an_accounts_keypair(
        h: Harness, inbox: tuple[Inbox, int]) -> None:
    address = _address()
    await _sign_up(h, inbox[0], address)
    async with h.engine.connect() as conn:
        access_key = (await conn.execute(sa.select(atlas_accounts.c.access_key).where(
            atlas_accounts.c.email == address))).scalar_one()
    info = await h.app[KEYPAIRS].get(access_key)
    assert info is not None and info.user_id == address
    status, me = await h.call("GET", "/atlas/me", keys=(access_key, info.secret_key))
    assert status == 200 and me["email"] == address
    # a keypair that belongs to no account is authenticated but is nobody here
    status, body = await h.call("GET", "/atlas/me")
    _problem(status, body, 401)
    status, body = await h.call("GET", "/atlas/me", keys=(access_key, "wrong-secret-key"))
    _problem(status, body, 401)


async def test_google_and_unknown_routes_answer_problems(h: Harness) -> None:
    status, body = await _req(h, "POST", "/atlas/auth/google", {"idToken": "x"})
    _problem(status, body, 404)
    assert body["type"].endswith("/not-offered") and "Google" in body["detail"]
    _problem(*await _req(h, "GET", "/atlas/no-such-route"), 404)
    _problem(*await _req(h, "GET", "/atlas/auth/sign-up"), 405)
    # the Backend.AI API's problems are unchanged (no seed 000 member)
    status, body = await h.call("GET", "/kernel/nope")
    assert "message" not in body


async def test_smtp_down_answers_500_and_leaves_nothing(
        mgr_db_url: str, tmp_path: Path, inbox: tuple[Inbox, int],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    config = _config(mgr_db_url, tmp_path, free_port(), username="atlas",
                     password=SMTP_SECRET)
    assert SMTP_SECRET not in repr(config)
    address = _address()
    async with open_harness(config) as h:
        service = h.app[ACCOUNTS]
        status, body = await _req(h, "POST", "/atlas/auth/sign-up",
                                  {"email": address, "password": PASSWORD, "nickname": "n"})
        _problem(status, body, 500)
        assert body["message"].startswith("Email external module error")
        async with h.engine.connect() as conn:
            assert not (await conn.execute(sa.select(atlas_accounts).where(
                atlas_accounts.c.email == address))).all()
            assert not (await conn.execute(sa.select(keypairs).where(
                keypairs.c.user_id == address))).all()
        # the server is back: the same sign-up now works (nothing was left to collide)
        up = config.model_copy(deep=True)
        up.atlas.smtp.port, up.atlas.smtp.username, up.atlas.smtp.password = inbox[1], None, None
        service.mailer = Mailer(up.atlas)
        assert (await _req(h, "POST", "/atlas/auth/sign-up",
                           {"email": address, "password": PASSWORD, "nickname": "n"}))[0] == 201
        assert (await _req(h, "GET", _link(await inbox[0].wait(address))))[0] == 200
        pair = await _sign_in(h, address)
        # a reset whose mail cannot be sent changes nothing
        service.mailer = Mailer(config.atlas)
        _problem(*await _req(h, "POST", "/atlas/auth/reset-password", {"email": address}), 500)
        async with h.engine.connect() as conn:
            temp = (await conn.execute(sa.select(atlas_accounts.c.temp_password_hash).where(
                atlas_accounts.c.email == address))).scalar_one()
        assert temp is None
        _problem(*await _req(h, "POST", "/atlas/auth/confirmation-emails/resend",
                             {"email": _address()}), 404)
        await _req(h, "PATCH", "/atlas/auth/password", {"password": "New-pass-99"},
                   token=pair["accessToken"])
    # everything the manager logged: aiosmtpd's "mail.log" is the test's server, and the
    # manager's logging setup keeps aiohttp's access log (request URLs) at WARNING
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records
                       if not r.name.startswith(("mail.log", "aiohttp.access")))
    assert "manager.atlas.mail" in logged  # the failures were logged, without secrets
    for secret in (SMTP_SECRET, PASSWORD, "New-pass-99", pair["accessToken"],
                   pair["refreshToken"]):
        assert secret not in logged
    assert "token=" not in logged and "temporary password is" not in logged


async def test_account_from_token_for_websockets(h: Harness, inbox: tuple[Inbox, int]) -> None:
    address = _address()
    await _sign_up(h, inbox[0], address)
    pair = await _sign_in(h, address)
    for token in (pair["accessToken"], f"Bearer {pair['accessToken']}"):
        assert (await account_from_token(h.app, token)).email == address
    for bad in (pair["refreshToken"], "", "Bearer", "x.y.z"):
        with pytest.raises(AuthenticationFailed):
            await account_from_token(h.app, bad)
    await _req(h, "POST", "/atlas/auth/sign-out", token=pair["accessToken"])
    with pytest.raises(AuthenticationFailed):
        await account_from_token(h.app, pair["accessToken"])


async def test_without_a_token_key_atlas_is_off(harness: Harness) -> None:
    """No token key: the generation product is off (its routes are not there: 404, never
    a 5xx), and the rest of the manager runs."""
    for path in ("/atlas/me", "/krako/me", "/ws", "/history", "/atlas/item/gs3d"):
        status, body = await _req(harness, "GET", path, token="x")
        assert status == 404, (path, body)
    assert (await harness.call("GET", "/"))[0] == 200  # the rest of the manager runs
