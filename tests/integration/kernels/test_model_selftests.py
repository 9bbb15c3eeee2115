"""The model code's self-tests inside the CPU model images, where PyTorch, pycolmap,
PyMCubes, trimesh and ffmpeg are (the project venv has none of them), offline, on this
checkout's code (mounted read-only over the image's copy, so a stale image still tests
this tree):

- ``kernels.models.selftest``: the splatting renderer and every gradient against a dense
  reference, tile binning, the PLY layout, a short fit;
- ``kernels.models.selftest_front``: frames, structure from motion on the synthetic video
  (registration and camera-centre alignment), the job runner and its refusals, interrupt;
- ``kernels.models.selftest_nerf``: the volume renderer against the analytic
  transmittance, the whole nerf2mesh pipeline (glb/obj colours, turntable frames).
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
GAUSSIAN, NERF = "kraken/gaussian-splatting:latest", "kraken/nerf2mesh:latest"
FRONT_CHECKS = ["video", "sfm", "run", "run_refusals", "run_interrupt"]


def selftest(image: str, module: str, *args: str) -> str:
    """Run ``python3 -m <module> <args>`` in ``image``; its output (fails the test on a
    non-zero exit)."""
    if shutil.which("docker") is None or \
            subprocess.run(["docker", "info"], capture_output=True, check=False).returncode:
        pytest.skip("no Docker engine reachable")
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True,
                      check=False).returncode:
        pytest.skip(f"{image} is not built (scripts/dev images builds it)")
    # one thread: on a shared 2-core machine two OpenMP threads wait on each other
    # (docs/benchmarks.md)
    proc = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--label", "kraken.test=models",
         "-v", f"{REPO / 'kernels'}:/opt/kraken/kernels:ro", "-w", "/opt/kraken",
         "-e", "PYTHONPATH=/opt/kraken", "-e", "KRAKEN_ATLAS_THREADS=1",
         "--entrypoint", "python3", image, "-m", module, *args],
        capture_output=True, text=True, timeout=1200, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    return output


def test_splatting_selftest() -> None:
    out = selftest(GAUSSIAN, "kernels.models.selftest")
    assert out.count("ok   check_") == 4, out


def test_front_end_selftest() -> None:
    out = selftest(GAUSSIAN, "kernels.models.selftest_front", *FRONT_CHECKS)
    passed = [line.split()[1] for line in out.splitlines() if line.startswith("PASS ")]
    assert passed == FRONT_CHECKS, out[-4000:]


def test_nerf2mesh_selftest() -> None:
    out = selftest(NERF, "kernels.models.selftest_nerf")
    assert "selftest_nerf: all checks passed" in out
    assert "ok: turntable.gif has 24 frames" in out
