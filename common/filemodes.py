"""Files holding credentials must be private to their owner (mode 0600 or stricter).

``loose_mode`` says why a file is too open (group or others may read or write it);
daemons call ``warn_if_loose`` for their config files and ``require_private`` for
key files whose leak is fatal (the manager's secrets key), the way ssh refuses a
private key that others can read.
"""
from __future__ import annotations

import base64
import logging
import os
import stat
from pathlib import Path

from common.config import ConfigError

log = logging.getLogger(__name__)


def loose_mode(path: Path) -> str | None:
    """Why ``path`` is readable or writable beyond its owner, or None when it is not."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None  # reading it fails later with its own message
    if stat.S_IMODE(mode) & 0o077:
        return (f"{path} has mode {stat.S_IMODE(mode):04o}: group/others may read it; "
                f"run `chmod 600 {path}`")
    return None


def warn_if_loose(*paths: Path | None) -> list[str]:
    """Log a warning for each given file that is group/world accessible."""
    found = [why for p in paths if p is not None and (why := loose_mode(p)) is not None]
    for why in found:
        log.warning("credentials file too open: %s", why)
    return found


def require_private(path: Path, what: str) -> None:
    """ConfigError when ``path`` is group/world accessible."""
    why = loose_mode(path)
    if why is not None:
        raise ConfigError(f"refusing to use the {what}: {why}")


def write_new_key(path: Path, n_bytes: int) -> Path:
    """Write ``n_bytes`` of fresh randomness, base64, to ``path`` (mode 0600 from the
    start); refuse to overwrite an existing file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(base64.b64encode(os.urandom(n_bytes)).decode() + "\n")
    return path
