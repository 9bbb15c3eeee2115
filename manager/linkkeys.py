"""CurveZMQ key files for the agent link: generating and loading them (z85 text)."""
from __future__ import annotations

import os
from pathlib import Path

import zmq

from common.config import ConfigError
from manager.config import LinkConfig

PUBLIC_NAME = "manager.key"
SECRET_NAME = "manager.key_secret"


def generate(directory: Path) -> tuple[Path, Path]:
    """Write a fresh keypair into ``directory``; the secret file is mode 0600."""
    directory.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.curve_keypair()
    pub_path, sec_path = directory / PUBLIC_NAME, directory / SECRET_NAME
    fd = os.open(sec_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secret + b"\n")
    os.chmod(sec_path, 0o600)
    pub_path.write_bytes(public + b"\n")
    return pub_path, sec_path


def _read_key(path: Path, what: str) -> bytes:
    try:
        key = path.read_bytes().strip()
    except OSError as e:
        raise ConfigError(f"cannot read the link {what} key {path}: {e.strerror}") from None
    if len(key) != 40:
        raise ConfigError(f"{path} is not a z85-encoded CurveZMQ key (40 characters)")
    return key


def load(config: LinkConfig) -> tuple[bytes | None, bytes | None]:
    """(secret, public) for the ROUTER; (None, None) only when link.insecure is set."""
    if config.secret_key_file is None or config.public_key_file is None:
        if config.insecure:
            return None, None
        raise ConfigError("link.secret_key_file and link.public_key_file are required "
                          "(generate them with `python -m manager gen-link-keys DIR`), "
                          "or set link.insecure = true for tests")
    return (_read_key(config.secret_key_file, "secret"),
            _read_key(config.public_key_file, "public"))
