"""Fixtures for the runner tests: a runner subprocess on free host ports and a client."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from common.msg_runner import RunnerReady
from tests.unit.kernels.runner_client import RunnerClient, RunnerProcess

REPO = Path(__file__).resolve().parents[3]


def free_port_base() -> int:
    """A port p such that p, p+1 and p+2 are all free on 127.0.0.1 right now."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base > 65000:
            continue
        try:
            socks = []
            for port in (base, base + 1, base + 2):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no three consecutive free ports")


def start_runner(tmp_path: Path, extra_env: dict[str, str] | None = None
                 ) -> tuple[subprocess.Popen[bytes], int]:
    base = free_port_base()
    workdir = tmp_path / "work"
    workdir.mkdir(exist_ok=True)
    env = dict(os.environ, KRAKEN_RUNNER_HOST="127.0.0.1", KRAKEN_RUNNER_PORT_BASE=str(base),
               KRAKEN_RUNNER_WORKDIR=str(workdir), PYTHONPATH=str(REPO),
               **(extra_env or {}))
    proc = subprocess.Popen([sys.executable, "-m", "kernels.runner"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return proc, base


@pytest.fixture
def runner_env() -> dict[str, str]:
    """Extra environment for the runner; override in a test module."""
    return {"KRAKEN_BATCH_DEFAULT_EXEC": "echo default-exec",
            "KRAKEN_BATCH_DEFAULT_BUILD": "echo default-build"}


@pytest.fixture
def runner(tmp_path: Path, runner_env: dict[str, str]) -> Iterator[RunnerProcess]:
    proc, base = start_runner(tmp_path, runner_env)
    ctx = zmq.Context()
    client = RunnerClient(ctx, base)
    try:
        ready = client.recv()
        assert isinstance(ready, RunnerReady)
        yield RunnerProcess(proc, client, tmp_path / "work", ready)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        ctx.destroy(linger=0)
