"""The gaussian-splatting model's checks (kernels/models/selftest.py), run here when the
interpreter has PyTorch; tests/integration/test_splat_image.py runs them in the image."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.torch
pytest.importorskip("torch", reason="PyTorch is not installed (the model images carry it)")

from kernels.models import selftest  # noqa: E402 - after the importorskip


def test_tile_renderer_and_its_gradients_match_a_dense_renderer() -> None:
    selftest.check_gradients_match_dense()


def test_tile_binning_never_drops_a_gaussian_that_covers_a_pixel() -> None:
    selftest.check_binning_keeps_covering_gaussians()


def test_fifty_iterations_raise_psnr() -> None:
    selftest.check_short_fit_raises_psnr()


def test_selftest_main_reports_success(capsys: pytest.CaptureFixture[str]) -> None:
    selftest.CHECKS = [selftest.check_ply_round_trip]
    try:
        assert selftest.main() == 0
    finally:
        import importlib
        importlib.reload(selftest)
    assert "ok   check_ply_round_trip" in capsys.readouterr().out
