"""The image's services (Jupyter, ...), started on demand for the proxy.

Owned by the I/O thread, like the PTY table. A service is defined by the image in
``<defs dir>/<name>.json``: ``{"argv": ["prog", "arg", ...], "env": {"NAME": "value"}}``.
``request`` starts it once, in its own session (process group) in the work directory,
as the runner's user (the session user); while it runs, a second request changes
nothing. Its processes are reaped by ``reap`` (the I/O thread's idle tick) and by the
next request, so a service that died is started again by the request after.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common.errors import InvalidAPIParameters
from common.msg_runner import ServiceStatus
from common.services import check_service_name

MAX_DEF_BYTES = 64 << 10
STOP_GRACE = 2.0  # seconds between SIGTERM and SIGKILL when the runner stops


class ServiceDefError(Exception):
    """A service definition is missing or malformed."""


def load_definition(defs_dir: Path, name: str) -> tuple[list[str], dict[str, str]]:
    """``(argv, env)`` of the service ``name``; ``ServiceDefError`` if unusable."""
    path = defs_dir / f"{name}.json"
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_DEF_BYTES + 1)
    except OSError as e:
        raise ServiceDefError(f"no definition {path}: {e.strerror}") from None
    if len(raw) > MAX_DEF_BYTES:
        raise ServiceDefError(f"{path} is larger than {MAX_DEF_BYTES} bytes")
    try:
        data: Any = json.loads(raw)
    except ValueError as e:
        raise ServiceDefError(f"{path} is not JSON: {e}") from None
    argv = data.get("argv") if isinstance(data, dict) else None
    env = data.get("env", {}) if isinstance(data, dict) else None
    if not (isinstance(argv, list) and argv and all(isinstance(a, str) and a for a in argv)):
        raise ServiceDefError(f"{path}: argv must be a non-empty list of strings")
    if not (isinstance(env, dict) and all(isinstance(k, str) and isinstance(v, str)
                                          for k, v in env.items())):
        raise ServiceDefError(f"{path}: env must map strings to strings")
    return argv, env


def _exit_status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


class ServiceTable:
    """The service processes of this runner, by service name."""

    def __init__(self, defs_dir: Path, workdir: Path) -> None:
        self._defs_dir = defs_dir
        self._workdir = workdir
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._last_exit: dict[str, int] = {}

    def owns(self, pid: int) -> bool:
        return any(p.pid == pid for p in self._procs.values())

    def reap(self) -> None:
        """Collect the services that ended (their exit status is kept for the next reply)."""
        for name, proc in list(self._procs.items()):
            code = proc.poll()
            if code is not None:
                del self._procs[name]
                self._last_exit[name] = _exit_status(code)
                _log(f"service {name} exited with status {self._last_exit[name]}")

    def request(self, name: str, probe: bool) -> ServiceStatus:
        """Start ``name`` unless it runs (or, with ``probe``, only say whether it runs)."""
        try:
            check_service_name(name)
        except InvalidAPIParameters as e:
            return ServiceStatus(name=str(name)[:100], state="failed", detail=str(e))
        self.reap()
        last = self._last_exit.get(name)
        if name in self._procs:
            return ServiceStatus(name=name, state="running", last_exit=last)
        if probe:
            return ServiceStatus(name=name, state="stopped", last_exit=last)
        try:
            argv, env = load_definition(self._defs_dir, name)
            self._procs[name] = subprocess.Popen(
                argv, cwd=self._workdir, env={**os.environ, **env},
                stdin=subprocess.DEVNULL, stdout=sys.__stderr__, stderr=sys.__stderr__,
                start_new_session=True)
        except (ServiceDefError, OSError) as e:
            return ServiceStatus(name=name, state="failed", detail=str(e), last_exit=last)
        _log(f"service {name} started (pid {self._procs[name].pid})")
        return ServiceStatus(name=name, state="started", last_exit=last)

    def close_all(self) -> None:
        """Stop every service's process group: SIGTERM, then SIGKILL after a grace."""
        procs = list(self._procs.values())
        for proc in procs:
            _signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for proc in procs:
            try:
                proc.wait(max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
        self._procs.clear()


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _log(text: str) -> None:
    print(f"kraken-runner: {text}", file=sys.__stderr__, flush=True)
