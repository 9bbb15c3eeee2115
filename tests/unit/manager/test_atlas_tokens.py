"""Atlas tokens: types kept apart, expiry, tampering, the key file's mode, Bearer parsing."""
from __future__ import annotations

import base64
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest

from common.config import ConfigError
from common.errors import AuthenticationFailed
from manager.atlas import tokens
from manager.atlas.identity import bearer_token
from manager.atlas.tokens import ACCESS, REFRESH, TokenKey

ACCOUNT, SIGN_IN = uuid.uuid4(), uuid.uuid4()


@pytest.fixture
def key() -> TokenKey:
    return TokenKey(os.urandom(32))


def test_access_token_claims(key: TokenKey) -> None:
    token = key.issue(ACCESS, ACCOUNT, SIGN_IN)
    claims = key.verify(token, ACCESS)
    assert (claims.account, claims.sign_in, claims.typ) == (ACCOUNT, SIGN_IN, ACCESS)
    raw = jwt.decode(token, options={"verify_signature": False})
    assert raw["exp"] - raw["iat"] == 3600 and raw["typ"] == "access"
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_refresh_token_lives_14_days(key: TokenKey) -> None:
    raw = jwt.decode(key.issue(REFRESH, ACCOUNT, SIGN_IN), options={"verify_signature": False})
    assert raw["exp"] - raw["iat"] == 14 * 86400 and raw["sid"] == str(SIGN_IN)


def test_one_type_is_refused_where_the_other_is_expected(key: TokenKey) -> None:
    with pytest.raises(AuthenticationFailed, match="not a refresh token"):
        key.verify(key.issue(ACCESS, ACCOUNT, SIGN_IN), REFRESH)
    with pytest.raises(AuthenticationFailed, match="not an access token"):
        key.verify(key.issue(REFRESH, ACCOUNT, SIGN_IN), ACCESS)


def test_expired_token_is_refused(key: TokenKey) -> None:
    past = datetime.now(UTC) - timedelta(hours=2)
    with pytest.raises(AuthenticationFailed, match="expired"):
        key.verify(key.issue(ACCESS, ACCOUNT, SIGN_IN, now=past), ACCESS)


def test_tampered_and_foreign_tokens_are_refused(key: TokenKey) -> None:
    token = key.issue(ACCESS, ACCOUNT, SIGN_IN)
    head, body, sig = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    claims["sub"] = str(uuid.uuid4())
    forged_body = jwt.encode(claims, "x" * 32, algorithm="HS256").split(".")[1]
    for bad in (f"{head}.{forged_body}.{sig}", token[:-2] + ("AA" if token[-2:] != "AA" else "BB"),
                TokenKey(os.urandom(32)).issue(ACCESS, ACCOUNT, SIGN_IN),
                jwt.encode({**claims, "typ": "access"}, "", algorithm="none"), "garbage", ""):
        with pytest.raises(AuthenticationFailed):
            key.verify(bad, ACCESS)


def test_confirmation_token_binds_account_and_email(key: TokenKey) -> None:
    t = key.confirmation(ACCOUNT, "a@example.com")
    assert key.check_confirmation(ACCOUNT, "A@Example.com", t)
    assert not key.check_confirmation(uuid.uuid4(), "a@example.com", t)
    assert not key.check_confirmation(ACCOUNT, "b@example.com", t)
    assert not key.check_confirmation(ACCOUNT, "a@example.com", t[:-1] + "0")
    # a JWT signature is never a confirmation token (separate derived keys)
    assert not key.check_confirmation(ACCOUNT, "a@example.com", "é")


def test_key_file_generated_private_and_loose_one_refused(tmp_path: Path) -> None:
    path = tokens.generate(tmp_path / "k" / "atlas.key")
    assert path.stat().st_mode & 0o777 == 0o600
    tokens.load(path).issue(ACCESS, ACCOUNT, SIGN_IN)
    assert repr(tokens.load(path)) == "TokenKey(...)"
    with pytest.raises(FileExistsError):
        tokens.generate(path)
    path.chmod(0o640)
    with pytest.raises(ConfigError, match="chmod 600"):
        tokens.load(path)
    bad = tmp_path / "bad.key"
    bad.write_text(base64.b64encode(b"short").decode())
    bad.chmod(0o600)
    with pytest.raises(ConfigError, match="32-byte"):
        tokens.load(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        tokens.load(tmp_path / "missing.key")


@pytest.mark.parametrize("header, token", [
    ("Bearer abc.def.ghi", "abc.def.ghi"),
    ("bearer abc", "abc"),
    ("Bearer Bearer abc", "abc"),  # the tutorial's sign-in answer shows "Bearer ..." inside
    ("Bearer", None), ("Bearer Bearer", None), ("abc", None), ("Basic abc", None),
    ("Bearer a b", None), ("Bearer Bearer Bearer abc", None), ("", None), (None, None),
    ("BackendAI signMethod=HMAC-SHA256, credential=a:b", None),
])
def test_bearer_header(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token
