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


def test_selftest_main_reports_each_check(capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> None:
        raise AssertionError("broken on purpose")
    monkeypatch.setattr(selftest, "CHECKS", [selftest.check_ply_round_trip])
    assert selftest.main() == 0
    monkeypatch.setattr(selftest, "CHECKS", [selftest.check_ply_round_trip, broken])
    assert selftest.main() == 1
    out = capsys.readouterr().out
    assert "ok   check_ply_round_trip" in out and "FAIL broken" in out


def test_epoch_maps_to_passes_over_the_views_within_a_time_budget() -> None:
    from kernels.models.gaussian_splatting import config_for
    low, high, clamped = config_for(1, 42, gpu=False), config_for(100, 42, gpu=False), \
        config_for(0, 42, gpu=False)
    assert (low.iterations, low.time_budget) == (42, 15.0)
    assert (high.iterations, high.time_budget) == (4200, 200.0)
    assert clamped.iterations == 42
    gpu = config_for(3, 42, gpu=True)
    assert (gpu.iterations, gpu.time_budget, gpu.sh_degree) == (126, 180.0, 3)


def test_pipeline_writes_the_point_cloud_thumbnail_and_psnr(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    from kernels.models import gaussian_splatting, ply, synthetic
    monkeypatch.setenv("KRAKEN_ATLAS_THREADS", "1")
    views = synthetic.render(48, 36, 16, n_points=800, supersample=1)
    reports: list[tuple[str, float, str]] = []
    lines: list[str] = []
    result = gaussian_splatting.run(views, 1, tmp_path / "outputs",
                                    lambda *r: reports.append(r), lines.append)
    assert result["outputs"] == {"1": "point_cloud.ply"}
    assert result["thumbnail"] == "thumbnail.png"
    assert result["metrics"]["iterations"] == 14 and result["metrics"]["psnr"] > 5
    cloud = ply.read(tmp_path / "outputs" / "point_cloud.ply")
    assert len(cloud) == result["metrics"]["gaussians"] > 0
    with Image.open(tmp_path / "outputs" / "thumbnail.png") as thumb:
        assert thumb.size == (48, 36)
    assert any(line.startswith("held-out PSNR: ") and line.endswith(" dB over 2 views")
               for line in lines)
    stages = [r[0] for r in reports]
    assert stages[0] == "train" and stages[-1] == "export"
    assert all(0.0 <= r[1] <= 100.0 for r in reports) and reports[-1][1] == 100.0
    assert sorted(p.name for p in (tmp_path / "outputs").iterdir()) == \
        ["point_cloud.ply", "thumbnail.png"]
