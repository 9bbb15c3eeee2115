"""Fixtures: a fake manager (real RouterLink + CurveZMQ) and agents on real Docker."""
from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.integration.agent.harness import (
    IMAGE,
    AgentHarness,
    FakeManager,
    require_docker_image,
)


@pytest.fixture
async def manager() -> AsyncIterator[FakeManager]:
    mgr = FakeManager()
    yield mgr
    await mgr.link.close()


@pytest.fixture
async def harness(manager: FakeManager, tmp_path: Path) -> AsyncIterator[AgentHarness]:
    require_docker_image()
    h = AgentHarness(manager, tmp_path / "scratch")
    try:
        yield h
    finally:
        await h.teardown()


@pytest.fixture(scope="session")
def sleeper_image() -> Iterator[str]:
    """A kernel image whose runner never starts (its command only sleeps)."""
    require_docker_image()
    tag = "kraken-test/sleeper:" + uuid.uuid4().hex[:8]
    dockerfile = f"FROM {IMAGE}\nCMD [\"sleep\", \"600\"]\n"
    subprocess.run(["docker", "build", "-q", "-t", tag, "-"], input=dockerfile.encode(),
                   check=True, capture_output=True)
    yield tag
    subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)


@pytest.fixture(scope="session")
def runner_with_status() -> None:
    """The kernel image's runner answers get-status (runner protocol v1 addition)."""
    require_docker_image()
    probe = subprocess.run(["docker", "run", "--rm", "--network", "none", "--entrypoint",
                            "grep", IMAGE, "-q", "get-status",
                            "/opt/kraken/common/msg_runner.py"],
                           capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"{IMAGE} has a runner without get-status: "
                    "rebuild it with python -m kernels.build python")
