"""Keypair secret keys encrypted at rest (AES-256-GCM, ``cryptography``).

The key is 32 random bytes, base64 in a file of mode 0600 outside the database
(``secrets.key_file``; ``python -m manager gen-secrets-key PATH`` writes one). A sealed
secret is the text ``k1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>``; the access key
is the associated data, so a sealed secret copied onto another row does not open.
The key id (first 8 hex digits of SHA-256 of the key) lets a start with the wrong key
fail with a clear message instead of 401s.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from common.config import ConfigError
from common.filemodes import require_private, write_new_key

PREFIX = "k1"
KEY_BYTES = 32
NONCE_BYTES = 12
_AAD = b"kraken-keypair-secret:"


class SecretBoxError(Exception):
    """A sealed secret does not open with the configured key."""


class SecretBox:
    """Seals and opens keypair secret keys; never logs or reprs the key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"the secrets key must be {KEY_BYTES} bytes")
        self._aead = AESGCM(key)
        self.key_id = hashlib.sha256(key).hexdigest()[:8]

    def __repr__(self) -> str:
        return f"SecretBox(key_id={self.key_id})"

    def seal(self, access_key: str, secret: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        ct = self._aead.encrypt(nonce, secret.encode(), _AAD + access_key.encode())
        return f"{PREFIX}:{self.key_id}:{base64.urlsafe_b64encode(nonce + ct).decode()}"

    def open(self, access_key: str, sealed: str) -> str:
        prefix, key_id, blob = (sealed.split(":", 2) + ["", ""])[:3]
        if prefix != PREFIX:
            raise SecretBoxError("not a sealed secret")
        if key_id != self.key_id:
            raise SecretBoxError(f"sealed with key {key_id}, the configured key is "
                                 f"{self.key_id}")
        try:
            raw = base64.urlsafe_b64decode(blob)
            plain = self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:],
                                       _AAD + access_key.encode())
        except (InvalidTag, binascii.Error, ValueError):
            raise SecretBoxError("the sealed secret does not open (altered or moved "
                                 "to another keypair)") from None
        return plain.decode()


def generate(path: Path) -> Path:
    """Write a fresh key to ``path`` (mode 0600); refuse to overwrite an existing one."""
    return write_new_key(path, KEY_BYTES)


def load(path: Path | None) -> SecretBox:
    """The box of the key file; ConfigError when unset, unreadable, too open or bad."""
    if path is None:
        raise ConfigError("secrets.key_file is required: keypair secret keys are stored "
                          "encrypted (create the key with `python -m manager "
                          "gen-secrets-key var/keys/secretbox.key`)")
    try:
        text = path.read_text().strip()
    except OSError as e:
        raise ConfigError(f"cannot read the secrets key {path}: {e.strerror}; keypair "
                          "secrets in the database cannot be used without it") from None
    require_private(path, "secrets key")
    try:
        return SecretBox(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError):
        raise ConfigError(f"{path} is not a base64 {KEY_BYTES}-byte secrets key") from None
