"""Cleaning up per-session scratch filesystems that a stopped agent or a failed test left
mounted (the agent keeps them across its own restarts, by design)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path


def unmount_scratch(root: Path) -> None:
    """Unmount whatever is left mounted under ``root`` (autoclear frees the loops)."""
    if root.is_dir():
        for entry in root.iterdir():
            if os.path.ismount(entry):
                subprocess.run(["umount", "-l", str(entry)], capture_output=True, check=False)
