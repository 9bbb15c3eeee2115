"""Scenario 9 (issue 8): `scripts/dev up`/`down` are correct right after a crash.

The shell functions of scripts/lib/cluster.sh run against a throwaway checkout (its
own var/), with a stand-in daemon module, so the real cluster is never touched. A pid
file naming a killed, zombie or recycled process is stale: `up` starts the daemon
again, `down` kills nothing that is not ours.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cluster import ROOT
from tests.faults.services import process_state

DAEMON = "fakedaemon"


@pytest.fixture
def checkout(tmp_path: Path) -> Iterator[Path]:
    """A fake checkout: var/venv/bin/python and a daemon module that sleeps."""
    (tmp_path / "var" / "venv" / "bin").mkdir(parents=True)
    (tmp_path / "var" / "run").mkdir()
    (tmp_path / "var" / "logs").mkdir()
    (tmp_path / "var" / "venv" / "bin" / "python").symlink_to(sys.executable)
    (tmp_path / f"{DAEMON}.py").write_text("import time\ntime.sleep(120)\n")
    yield tmp_path
    pidf = tmp_path / "var" / "run" / f"{DAEMON}.pid"
    if pidf.exists():
        _kill(int(pidf.read_text()))


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def dev(checkout: Path, script: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` with scripts/lib/{common,cluster}.sh sourced for ``checkout``."""
    lib = ROOT / "scripts" / "lib"
    return subprocess.run(
        ["bash", "-c", f'set -euo pipefail; ROOT="{checkout}"; source "{lib}/common.sh"; '
                       f'source "{lib}/cluster.sh"; {script}'],
        cwd=checkout, capture_output=True, text=True, timeout=60)


def pid_file(checkout: Path) -> Path:
    return checkout / "var" / "run" / f"{DAEMON}.pid"


def start(checkout: Path) -> int:
    out = dev(checkout, f"start_daemon {DAEMON} --flag")
    assert out.returncode == 0, out.stderr
    pid = int(pid_file(checkout).read_text())
    deadline = time.monotonic() + 10
    while f"-m {DAEMON}" not in Path(f"/proc/{pid}/cmdline").read_bytes().replace(
            b"\0", b" ").decode() and time.monotonic() < deadline:
        time.sleep(0.05)  # nohup has not exec'd python yet
    return pid


def test_running_daemon_is_recognised_once(checkout: Path) -> None:
    pid = start(checkout)
    out = dev(checkout, f"start_daemon {DAEMON}")
    assert "already running" in out.stdout and str(pid) in out.stdout
    assert int(pid_file(checkout).read_text()) == pid
    assert dev(checkout, f"stop_daemon {DAEMON}").returncode == 0
    assert process_state(pid) in ("", "Z") and not pid_file(checkout).exists()


def test_zombie_pid_is_stale(checkout: Path) -> None:
    """A killed daemon its parent has not reaped yet passes `kill -0`."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while process_state(child.pid) != "Z" and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert process_state(child.pid) == "Z"
        pid_file(checkout).write_text(f"{child.pid}\n")
        out = dev(checkout, f"start_daemon {DAEMON}")
        assert "already running" not in out.stdout, out.stdout
        assert int(pid_file(checkout).read_text()) != child.pid
    finally:
        child.wait()


def test_killed_daemon_is_started_again(checkout: Path) -> None:
    pid = start(checkout)
    os.kill(pid, signal.SIGKILL)
    out = dev(checkout, f"start_daemon {DAEMON}")
    assert "already running" not in out.stdout, out.stdout
    assert int(pid_file(checkout).read_text()) != pid


def test_recycled_pid_is_stale_and_never_killed(checkout: Path) -> None:
    """The pid file names a process that is not our daemon: an unrelated program, or
    the same module run from another checkout. `down` must not kill it."""
    for cmd in (["sleep", "60"], [sys.executable, "-m", DAEMON]):
        other = subprocess.Popen(cmd, cwd=checkout)
        try:
            pid_file(checkout).write_text(str(other.pid))
            assert dev(checkout, f"daemon_pid {DAEMON}").returncode == 1
            assert not pid_file(checkout).exists(), "a stale pid file is removed"
            pid_file(checkout).write_text(str(other.pid))
            assert dev(checkout, f"stop_daemon {DAEMON}").returncode == 0
            assert other.poll() is None, f"stop_daemon killed an unrelated process {cmd}"
            assert not pid_file(checkout).exists()
        finally:
            other.kill()
            other.wait()


def test_garbage_and_missing_pid_files(checkout: Path) -> None:
    for content in ("", "not-a-pid", "-1", "999999999"):
        pid_file(checkout).write_text(content)
        assert dev(checkout, f"daemon_pid {DAEMON}").returncode == 1
        assert not pid_file(checkout).exists()
    assert dev(checkout, f"daemon_pid {DAEMON}").returncode == 1
