"""Credential files readable by group/others are reported (warned) or refused."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from common.config import ConfigError
from common.filemodes import loose_mode, require_private, warn_if_loose


def test_loose_files_are_warned_about_and_private_ones_are_not(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    private, shared = tmp_path / "manager.toml", tmp_path / "join_token"
    for f, mode in ((private, 0o600), (shared, 0o644)):
        f.write_text("x")
        os.chmod(f, mode)
    with caplog.at_level(logging.WARNING):
        found = warn_if_loose(private, shared, None, tmp_path / "missing")
    assert len(found) == 1 and "0644" in found[0] and "chmod 600" in found[0]
    assert str(shared) in caplog.text and str(private) not in caplog.text
    assert loose_mode(private) is None
    os.chmod(private, 0o660)  # group-writable counts too
    assert loose_mode(private) is not None


def test_require_private_refuses(tmp_path: Path) -> None:
    key = tmp_path / "secret.key"
    key.write_text("k")
    os.chmod(key, 0o604)
    with pytest.raises(ConfigError, match="refusing to use the secrets key"):
        require_private(key, "secrets key")
    os.chmod(key, 0o400)
    require_private(key, "secrets key")


def test_url_passwords_are_redacted_from_logs() -> None:
    from common.logging import redact

    text = redact("redis at redis://:s3cretPW@127.0.0.1:16379/0 and "
                  "postgresql+asyncpg://kraken:pgpass@db/kraken")
    assert "s3cretPW" not in text and "pgpass" not in text
    assert "redis://:***@127.0.0.1:16379/0" in text and "kraken:***@db" in text
