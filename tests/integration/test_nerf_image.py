"""The nerf2mesh self-test (kernels/models/selftest_nerf.py) passes inside the
``kraken/nerf2mesh:latest`` image: its torch, PyMCubes, trimesh and Pillow render, mesh and
export the synthetic scene with no network."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

IMAGE = "kraken/nerf2mesh:latest"
KERNELS = Path(__file__).resolve().parents[2] / "kernels"


def image_present() -> str | None:
    """None when the image can be run, else why not."""
    if shutil.which("docker") is None:
        return "no docker binary"
    probe = subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True,
                           check=False)
    if probe.returncode != 0:
        return f"{IMAGE} is not built (scripts/dev images builds it)"
    return None


def test_the_selftest_passes_in_the_image() -> None:
    reason = image_present()
    if reason:
        pytest.skip(reason)
    proc = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--cpus", "2",
         "-e", "KRAKEN_ATLAS_THREADS=2", "-e", "PYTHONPATH=/opt/kraken", "-w", "/opt/kraken",
         "-v", f"{KERNELS}:/opt/kraken/kernels:ro", "--entrypoint", "python3", IMAGE,
         "-m", "kernels.models.selftest_nerf"],
        capture_output=True, text=True, timeout=900, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert "selftest_nerf: all checks passed" in output
    assert "ok: turntable.gif has 24 frames" in output
