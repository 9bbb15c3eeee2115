"""The generation front end (frames, structure from motion, the job runner) inside the
CPU model image: kernels/models/selftest_front.py run there with the image's ffmpeg,
pycolmap and numpy, offline, on this checkout's code (mounted read-only)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

IMAGE = "kraken/gaussian-splatting:latest"
REPO = Path(__file__).resolve().parents[3]
CHECKS = ["video", "sfm", "run", "run_refusals", "run_interrupt"]


@pytest.fixture(scope="module")
def selftest_output() -> str:
    if shutil.which("docker") is None or \
            subprocess.run(["docker", "info"], capture_output=True, check=False).returncode:
        pytest.skip("no Docker engine reachable")
    if subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True,
                      check=False).returncode:
        pytest.skip(f"{IMAGE} is not built (scripts/dev images builds it)")
    proc = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--label", "kraken.test=models",
         "-v", f"{REPO}:/src:ro", "-w", "/src", "-e", "PYTHONPATH=/src",
         "-e", "KRAKEN_ATLAS_THREADS=2", "--entrypoint", "python3", IMAGE,
         "-m", "kernels.models.selftest_front", *CHECKS],
        capture_output=True, text=True, timeout=1200, check=False)
    return proc.stdout + proc.stderr


@pytest.mark.parametrize("check", CHECKS)
def test_front_end_check_passes_in_the_model_image(selftest_output: str, check: str) -> None:
    lines = [line for line in selftest_output.splitlines()
             if line.startswith(("PASS ", "FAIL ")) and line.split(":")[0].split()[1] == check]
    assert lines == [f"PASS {check}"], selftest_output[-4000:]
