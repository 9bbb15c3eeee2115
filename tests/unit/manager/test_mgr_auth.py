"""Signature checks: a request signed as client 18.12.3 signs it passes; any tampering fails."""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest

from common.errors import AuthenticationFailed
from common.ids import AccessKey
from manager.api.auth import (
    SignedParts,
    compute_signature,
    parse_authorization,
    parse_date,
    verify,
)
from manager.services.keypairs import KeypairInfo

SECRET = "s3cr3t-key-for-tests"
KEYPAIR = KeypairInfo(AccessKey("AKIATESTKEY"), SECRET, "u", True, False, 5)


def client_signature(method: str, path: str, date: datetime, host: str, content_type: str,
                     version: str, secret: str = SECRET) -> str:
    """Independent re-statement of how backend.ai-client 18.12.3 signs (auth.py)."""
    body_hash = hashlib.sha256(b"").hexdigest()
    text = (f"{method}\n{path}\n{date.isoformat()}\nhost:{host}\n"
            f"content-type:{content_type}\nx-backendai-version:{version}\n{body_hash}")
    key = hmac.new(secret.encode(), date.strftime("%Y%m%d").encode(), "sha256").digest()
    key = hmac.new(key, host.encode(), "sha256").digest()
    return hmac.new(key, text.encode(), "sha256").hexdigest()


@pytest.fixture
def signed() -> tuple[SignedParts, str, datetime]:
    date = datetime.now(UTC)
    parts = SignedParts("POST", "/kernel/create?x=1", date.isoformat(), "127.0.0.1:8081",
                        "application/json", "v4.20181215", b'{"lang": "python"}')
    sig = client_signature("POST", "/kernel/create?x=1", date, "127.0.0.1:8081",
                           "application/json", "v4.20181215")
    return parts, sig, date


def test_client_signature_is_accepted(signed: tuple[SignedParts, str, datetime]) -> None:
    parts, sig, _date = signed
    assert verify(KEYPAIR, parts, sig, parse_date(parts.date), "sha256") is KEYPAIR


@pytest.mark.parametrize("field,value", [
    ("method", "GET"), ("path", "/kernel/create?x=2"), ("host", "evil:8081"),
    ("content_type", "text/plain"), ("version", "v4.20190315"),
])
def test_tampered_field_is_rejected(signed: tuple[SignedParts, str, datetime],
                                    field: str, value: str) -> None:
    parts, sig, date = signed
    tampered = dataclasses.replace(parts, **{field: value})
    with pytest.raises(AuthenticationFailed):
        verify(KEYPAIR, tampered, sig, date, "sha256")


def test_tampered_date_is_rejected(signed: tuple[SignedParts, str, datetime]) -> None:
    parts, sig, date = signed
    later = date + timedelta(seconds=1)
    with pytest.raises(AuthenticationFailed):
        verify(KEYPAIR, dataclasses.replace(parts, date=later.isoformat()), sig, later, "sha256")


def test_body_is_not_signed_in_v4_20181215(signed: tuple[SignedParts, str, datetime]) -> None:
    parts, sig, date = signed
    assert verify(KEYPAIR, dataclasses.replace(parts, body=b"other"), sig, date, "sha256")


def test_older_versions_sign_the_body() -> None:
    date = datetime.now(UTC)
    parts = SignedParts("POST", "/kernel", date.isoformat(), "h", "application/json",
                        "v3.20170615", b"{}")
    sig = compute_signature(SECRET, parts, date)
    assert verify(KEYPAIR, parts, sig, date, "sha256")
    with pytest.raises(AuthenticationFailed):
        verify(KEYPAIR, dataclasses.replace(parts, body=b"{ }"), sig, date, "sha256")


def test_wrong_secret_and_unknown_and_inactive_keys(
        signed: tuple[SignedParts, str, datetime]) -> None:
    parts, sig, date = signed
    other = dataclasses.replace(KEYPAIR, secret_key="another-secret")
    with pytest.raises(AuthenticationFailed, match="mismatch"):
        verify(other, parts, sig, date, "sha256")
    with pytest.raises(AuthenticationFailed, match="unknown"):
        verify(None, parts, sig, date, "sha256")
    with pytest.raises(AuthenticationFailed, match="inactive"):
        verify(dataclasses.replace(KEYPAIR, is_active=False), parts, sig, date, "sha256")


def test_clock_skew_over_15_minutes_is_rejected() -> None:
    now = datetime.now(UTC)
    assert parse_date((now - timedelta(minutes=14)).isoformat(), now)
    with pytest.raises(AuthenticationFailed, match="15 minutes"):
        parse_date((now - timedelta(minutes=16)).isoformat(), now)
    with pytest.raises(AuthenticationFailed, match="15 minutes"):
        parse_date((now + timedelta(minutes=16)).isoformat(), now)
    with pytest.raises(AuthenticationFailed):
        parse_date("not a date", now)


def test_naive_date_is_utc() -> None:
    now = datetime.now(UTC)
    naive = now.replace(tzinfo=None).isoformat()
    assert parse_date(naive, now) == now


def test_authorization_header_parsing() -> None:
    assert parse_authorization(
        "BackendAI signMethod=HMAC-SHA256, credential=AKIA1:abcDEF0") == (
        "sha256", "AKIA1", "abcdef0")
    for bad in ("Bearer xyz", "BackendAI signMethod=HMAC-MD5, credential=a:ff",
                "BackendAI signMethod=HMAC-SHA256, credential=nosig"):
        with pytest.raises(AuthenticationFailed):
            parse_authorization(bad)


def test_strict_string_to_sign_matches_docs_example() -> None:
    """The worked example of docs/api.md (strict signing), byte for byte."""
    from manager.api.auth import string_to_sign
    from manager.api.strict import StrictHeaders

    body = b'{"lang":"python"}'
    digest = "11fac2c3366f8ef77961fd24ac39c84c7375b1c4b0289c481b04d2df33457e8d"
    assert hashlib.sha256(body).hexdigest() == digest
    parts = SignedParts("POST", "/kernel/create", "2026-11-24T06:00:00+00:00",
                        "127.0.0.1:8081", "application/json", "v4.20181215", body,
                        StrictHeaders("3q2-7wAAAAAAAAAAAAAAAA", digest))
    text = ("kraken-strict-v1\nPOST\n/kernel/create\n2026-11-24T06:00:00+00:00\n"
            "host:127.0.0.1:8081\ncontent-type:application/json\n"
            "x-backendai-version:v4.20181215\nx-kraken-nonce:3q2-7wAAAAAAAAAAAAAAAA\n"
            f"x-kraken-content-sha256:{digest}")
    assert string_to_sign(parts) == text.encode()
    key = hmac.new(SECRET.encode(), b"20261124", "sha256").digest()
    key = hmac.new(key, b"127.0.0.1:8081", "sha256").digest()
    expected = hmac.new(key, text.encode(), "sha256").hexdigest()
    assert expected == "968bc51d4bd841c79ed4949a68fe790eaa01cacf2a260c57c29ea527b18217a0"
    date = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
    assert compute_signature(SECRET, parts, date) == expected


def test_strict_signature_differs_from_v4_and_needs_strict_keypairs(
        signed: tuple[SignedParts, str, datetime]) -> None:
    from common.errors import StrictSigningRequired
    from manager.api.strict import StrictHeaders

    parts, sig, date = signed
    strict_kp = dataclasses.replace(KEYPAIR, strict_signing=True)
    with pytest.raises(StrictSigningRequired):
        verify(strict_kp, parts, sig, date, "sha256")
    strict_parts = dataclasses.replace(parts, strict=StrictHeaders("n" * 22, "0" * 64))
    with pytest.raises(AuthenticationFailed):  # a v4 signature is no strict signature
        verify(strict_kp, strict_parts, sig, date, "sha256")
    good = compute_signature(SECRET, strict_parts, date)
    assert verify(strict_kp, strict_parts, good, date, "sha256") is strict_kp
