"""The gaussian-splatting checks (kernels/models/selftest.py: renderer against a dense
reference, tile binning, PLY layout, a short fit) inside the model image, where PyTorch
is (the project venv has none). Runs only where kraken/gaussian-splatting:latest exists
(``scripts/dev images``); marked ``torch`` so a machine without it skips even under
KRAKEN_NO_SKIP."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

IMAGE = "kraken/gaussian-splatting:latest"
MODELS = Path(__file__).resolve().parents[2] / "kernels" / "models"

pytestmark = [pytest.mark.integration, pytest.mark.torch]


def image_present() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True,
                           check=False)
    return probe.returncode == 0


def test_model_selftest_passes_in_the_image() -> None:
    """The checked-out model code (mounted over the image's copy, so a stale image still
    tests this tree) against the image's torch, numpy and Python."""
    if not image_present():
        pytest.skip(f"{IMAGE} is not built here (scripts/dev images)")
    proc = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--label", "kraken.test=models",
         "-v", f"{MODELS}:/opt/kraken/kernels/models:ro", "-e", "KRAKEN_ATLAS_THREADS=1",
         "-e", "PYTHONPATH=/opt/kraken", "-w", "/opt/kraken",
         "--entrypoint", "python3", IMAGE, "-m", "kernels.models.selftest"],
        capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("ok   check_") == 4, proc.stdout
