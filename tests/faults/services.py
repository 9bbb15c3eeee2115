"""Looking at processes from the host: the pids inside a container, a process's state."""
from __future__ import annotations

import subprocess
from pathlib import Path


def pids_in_container(container_id: str) -> list[tuple[int, str]]:
    """Host pids and command lines of a container's processes (``docker top``)."""
    out = subprocess.run(["docker", "top", container_id, "-eo", "pid,args"],
                         capture_output=True, text=True, timeout=30, check=True)
    rows = []
    for line in out.stdout.splitlines()[1:]:
        pid, _, args = line.strip().partition(" ")
        if pid.isdigit():
            rows.append((int(pid), args))
    return rows


def process_state(pid: int) -> str:
    """The one-letter state of a process (``/proc/<pid>/stat``), or "" when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[0]

