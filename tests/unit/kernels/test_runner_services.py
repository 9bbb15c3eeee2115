"""The runner starts an image's services on request: once, in the work directory, again
after they die, and never leaves a zombie or an orphan behind."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from common.msg_runner import ServiceStatus, Shutdown, StartService
from tests.unit.kernels.runner_client import RunnerProcess

# A service that logs each start in its working directory, then waits to be stopped.
NAP = "import os, time\nopen('starts.log', 'a').write(f'{os.getpid()}\\n')\ntime.sleep(600)"


@pytest.fixture
def runner_env(tmp_path: Path) -> dict[str, str]:
    defs = tmp_path / "services"
    defs.mkdir()
    (defs / "nap.json").write_text(json.dumps(
        {"argv": [sys.executable, "-c", NAP], "env": {"KRAKEN_TEST_SERVICE": "1"}}))
    (defs / "crash.json").write_text(json.dumps(
        {"argv": [sys.executable, "-c", "raise SystemExit(3)"]}))
    (defs / "broken.json").write_text('{"argv": "not a list"}')
    (defs / "missing-exe.json").write_text('{"argv": ["/nonexistent/program"]}')
    return {"KRAKEN_RUNNER_SERVICES_DIR": str(defs)}


def request(runner: RunnerProcess, name: str, probe: bool = False) -> ServiceStatus:
    reply = runner.client.control_reply(StartService(name=name, probe=probe))
    assert isinstance(reply, ServiceStatus)
    return reply


def starts(runner: RunnerProcess, count: int, timeout: float = 10.0) -> list[int]:
    """The pids the nap service logged, once there are ``count`` of them."""
    log = runner.workdir / "starts.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [int(x) for x in log.read_text().split()] if log.exists() else []
        if len(pids) >= count:
            return pids
        time.sleep(0.02)
    raise AssertionError(f"the service did not log {count} starts in {timeout}s")


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    """True once ``pid`` neither runs nor waits as a zombie (its parent reaped it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not os.path.exists(f"/proc/{pid}"):
            return True
        time.sleep(0.02)
    return False


def test_started_once_in_the_work_directory_and_again_after_it_died(
        runner: RunnerProcess) -> None:
    assert request(runner, "nap", probe=True) == ServiceStatus(name="nap", state="stopped")
    assert request(runner, "nap").state == "started"
    [pid] = starts(runner, 1)
    assert request(runner, "nap") == ServiceStatus(name="nap", state="running")
    assert request(runner, "nap", probe=True).state == "running"
    with open(f"/proc/{pid}/environ", "rb") as fh:
        assert b"KRAKEN_TEST_SERVICE=1" in fh.read().split(b"\0")
    assert os.getsid(pid) == pid  # its own session: the runner can stop its whole group
    os.kill(pid, 9)
    assert wait_gone(pid)  # reaped by the runner, not left a zombie
    assert request(runner, "nap", probe=True) == ServiceStatus(
        name="nap", state="stopped", last_exit=128 + 9)
    assert request(runner, "nap").state == "started"
    assert len(starts(runner, 2)) == 2


def test_failures_say_why(runner: RunnerProcess) -> None:
    assert request(runner, "crash").state == "started"
    deadline = time.monotonic() + 10
    while (status := request(runner, "crash", probe=True)).state != "stopped":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert status.last_exit == 3
    ghost = request(runner, "ghost")
    assert ghost.state == "failed" and "no definition" in ghost.detail
    broken = request(runner, "broken")
    assert broken.state == "failed" and "argv must be a non-empty list" in broken.detail
    missing = request(runner, "missing-exe")
    assert missing.state == "failed" and "/nonexistent/program" in missing.detail
    evil = request(runner, "../../etc/passwd")
    assert evil.state == "failed" and "invalid service name" in evil.detail


def test_shutdown_stops_the_services(runner: RunnerProcess) -> None:
    assert request(runner, "nap").state == "started"
    [pid] = starts(runner, 1)
    runner.client.control(Shutdown())
    assert runner.proc.wait(10) == 0
    assert wait_gone(pid)
