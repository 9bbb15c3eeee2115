"""Choosing gsplat or the CPU rasteriser, and the call into gsplat (with a fake gsplat:
no GPU here)."""
from __future__ import annotations

import sys
import types
from typing import Any

import pytest

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch", reason="PyTorch is not installed (the model images carry it)")

from kernels.models import selftest, splat_cpu, splat_gpu  # noqa: E402


class FakeGsplat(types.ModuleType):
    def __init__(self) -> None:
        super().__init__("gsplat")
        self.__version__ = "1.5.3"
        self.calls: list[dict[str, Any]] = []

    def rasterization(self, **kw: Any) -> tuple[Any, Any, dict[str, Any]]:
        self.calls.append(kw)
        n = kw["means"].shape[0]
        means2d = (kw["means"][:, :2] * 10.0)[None]
        img = (kw["colors"].mean() + means2d.sum()) * torch.ones(1, kw["height"],
                                                                 kw["width"], 3)
        radii = torch.arange(n).repeat(2, 1).T[None]  # (1, N, 2), as gsplat >= 1.5
        return img, torch.ones(1, kw["height"], kw["width"], 1), \
            {"means2d": means2d, "radii": radii}


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> FakeGsplat:
    fake = FakeGsplat()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda _=0: "Fake GPU")
    monkeypatch.setitem(sys.modules, "gsplat", fake)
    return fake


def test_cpu_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    backend = splat_gpu.select()
    assert (backend.name, backend.device) == ("cpu", "cpu")
    assert backend.rasterize is splat_cpu.rasterize


def test_cpu_when_gsplat_does_not_import(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "gsplat", None)  # import raises ImportError
    backend = splat_gpu.select()
    assert backend.name == "cpu" and "gsplat" in backend.reason


def test_gsplat_on_cuda(fake_cuda: FakeGsplat) -> None:
    backend = splat_gpu.select()
    assert (backend.name, backend.device) == ("gsplat", "cuda")
    assert "1.5.3" in backend.reason and "Fake GPU" in backend.reason
    assert splat_gpu.select(prefer_gpu=False).name == "cpu"


def test_the_call_into_gsplat(fake_cuda: FakeGsplat) -> None:
    scene = selftest.random_scene(5)
    means = scene["means"].clone().requires_grad_(True)
    cam = selftest.tiny_camera(40, 30)
    out = splat_gpu.select().rasterize(means, scene["quats"], scene["log_scales"],
                                       scene["opacities"], scene["colors"], cam,
                                       torch.tensor([0.1, 0.2, 0.3]))
    kw = fake_cuda.calls[0]
    assert kw["viewmats"].shape == (1, 4, 4) and kw["Ks"].shape == (1, 3, 3)
    assert torch.equal(kw["viewmats"][0], cam.world_to_cam)
    assert (kw["width"], kw["height"], kw["packed"]) == (40, 30, False)
    assert torch.allclose(kw["scales"], torch.exp(scene["log_scales"]))
    assert kw["eps2d"] == splat_cpu.DILATION and kw["backgrounds"].shape == (1, 3)
    assert out.image.shape == (30, 40, 3)
    assert out.radii.tolist() == [0, 1, 2, 3, 4] and out.visible.tolist()[0] is False
    out.image.sum().backward()  # means2d keeps its gradient for densification
    assert out.means2d.grad is not None and out.means2d.grad.shape == (1, 5, 2)
