"""Fixtures for the kernel image tests: the images (built once, cached by recipe hash)
and containers started from them, removed afterwards."""
from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from kernels import build


def docker(*args: str, check: bool = True) -> str:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120,
                          check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"docker {args[0]} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


@pytest.fixture(scope="session")
def python_image() -> str:
    """``kraken/python:latest``, built by ``kernels.build`` unless already current."""
    if shutil.which("docker") is None or \
            subprocess.run(["docker", "info"], capture_output=True, check=False).returncode:
        pytest.skip("no Docker engine reachable")
    assert build.main(["python"]) == 0, "the image build failed (see captured output)"
    return build.PYTHON_IMAGE


@dataclass
class Container:
    id: str
    ip: str
    inspect: dict[str, Any]


@pytest.fixture
def kernel_container(python_image: str) -> Iterator[Container]:
    """A detached container of the python image, as the agent starts one (with --init)."""
    cid = docker("run", "-d", "--init", "--label", "kraken.test=kernels", python_image)
    try:
        info: dict[str, Any] = {}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            info = json.loads(docker("inspect", cid))[0]
            networks = info["NetworkSettings"]["Networks"]
            ip = next((n["IPAddress"] for n in networks.values() if n["IPAddress"]), "")
            if info["State"]["Running"] and ip:
                yield Container(cid, ip, info)
                return
            time.sleep(0.1)
        raise RuntimeError(f"container did not get an IP: {docker('logs', cid, check=False)}")
    finally:
        docker("rm", "-f", cid, check=False)
