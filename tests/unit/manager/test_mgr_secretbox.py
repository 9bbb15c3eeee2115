"""The secrets box: sealed secrets open only with their key and on their own row."""
from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from common.config import ConfigError
from manager import secretbox
from manager.secretbox import SecretBox, SecretBoxError


def test_seal_opens_only_with_the_same_key_and_row() -> None:
    box, other = SecretBox(os.urandom(32)), SecretBox(os.urandom(32))
    sealed = box.seal("AKIAONE", "the-secret")
    assert "the-secret" not in sealed and sealed.startswith(f"k1:{box.key_id}:")
    assert box.open("AKIAONE", sealed) == "the-secret"
    assert box.seal("AKIAONE", "the-secret") != sealed  # a fresh nonce each time
    with pytest.raises(SecretBoxError, match="configured key"):
        other.open("AKIAONE", sealed)
    with pytest.raises(SecretBoxError, match="moved"):
        box.open("AKIATWO", sealed)  # copied onto another keypair's row
    head, blob = sealed.rsplit(":", 1)
    raw = bytearray(base64.urlsafe_b64decode(blob))
    for index in (0, len(raw) // 2, len(raw) - 1):  # nonce, ciphertext, tag
        altered = bytearray(raw)
        altered[index] ^= 0x01
        with pytest.raises(SecretBoxError):
            box.open("AKIAONE", f"{head}:{base64.urlsafe_b64encode(altered).decode()}")
    assert "key" not in repr(box).replace("key_id", "")


def test_key_file_is_generated_private_and_checked(tmp_path: Path) -> None:
    path = secretbox.generate(tmp_path / "keys" / "box.key")
    assert (path.stat().st_mode & 0o777) == 0o600
    assert secretbox.load(path).key_id == secretbox.load(path).key_id
    with pytest.raises(FileExistsError):
        secretbox.generate(path)
    os.chmod(path, 0o640)
    with pytest.raises(ConfigError, match="mode 0640"):
        secretbox.load(path)
    os.chmod(path, 0o600)
    path.write_text("not base64 at all!\n")
    with pytest.raises(ConfigError, match="not a base64"):
        secretbox.load(path)
    with pytest.raises(ConfigError, match="required"):
        secretbox.load(None)
    with pytest.raises(ConfigError, match="cannot read"):
        secretbox.load(tmp_path / "missing.key")
