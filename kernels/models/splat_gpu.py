"""The GPU rasteriser: gsplat's CUDA ``rasterization()`` behind the same interface as
``splat_cpu.rasterize``, and the choice between the two.

gsplat (PyPI ``gsplat``) is imported lazily: only the CUDA image carries it.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch

from kernels.models import splat_cpu
from kernels.models.gaussians import Rasterize
from kernels.models.splat_cpu import DILATION, NEAR, Camera, RenderOut


@dataclass
class Backend:
    name: str               # "gsplat" or "cpu"
    device: str             # torch device of the parameters and images
    rasterize: Rasterize
    reason: str             # why this backend, for the log


def _load_gsplat() -> ModuleType | None:
    try:
        return importlib.import_module("gsplat")
    except Exception:  # noqa: BLE001 - any import failure means: no usable gsplat
        return None


def gsplat_rasterizer(gsplat: Any) -> Rasterize:
    """A ``Rasterize`` calling ``gsplat.rasterization`` for one camera (unpacked mode, so
    ``means2d`` lines up with the gaussians for densification)."""

    def rasterize(means: torch.Tensor, quats: torch.Tensor, log_scales: torch.Tensor,
                  opacities: torch.Tensor, colors: torch.Tensor, cam: Camera,
                  background: torch.Tensor) -> RenderOut:
        dev = means.device
        img, _alpha, meta = gsplat.rasterization(
            means=means, quats=quats, scales=torch.exp(log_scales), opacities=opacities,
            colors=colors, viewmats=cam.world_to_cam.to(dev)[None],
            Ks=cam.intrinsics.to(dev)[None], width=cam.width, height=cam.height,
            near_plane=NEAR, eps2d=DILATION, packed=False,
            backgrounds=background.to(dev)[None], render_mode="RGB")
        means2d = meta["means2d"]
        if means2d.requires_grad:
            means2d.retain_grad()
        radii = meta["radii"][0]
        if radii.dim() == 2:  # gsplat >= 1.5 gives a radius per axis
            radii = radii.max(dim=-1).values
        # means2d stays (1, N, 2): its .grad is read by the training loop
        return RenderOut(img[0], means2d, radii, radii > 0)

    return rasterize


def select(prefer_gpu: bool = True) -> Backend:
    """gsplat on CUDA when a GPU is visible and gsplat imports; else the CPU renderer."""
    if not prefer_gpu:
        return Backend("cpu", "cpu", splat_cpu.rasterize, "GPU not requested")
    if not torch.cuda.is_available():
        return Backend("cpu", "cpu", splat_cpu.rasterize, "no CUDA device")
    gsplat = _load_gsplat()
    if gsplat is None or not hasattr(gsplat, "rasterization"):
        return Backend("cpu", "cpu", splat_cpu.rasterize, "gsplat is not installed")
    return Backend("gsplat", "cuda", gsplat_rasterizer(gsplat),
                   f"gsplat {getattr(gsplat, '__version__', '?')} on "
                   f"{torch.cuda.get_device_name(0)}")
