"""Training and rendering of a ``RadianceGrid`` on posed views: random ray batches, Adam,
total-variation regularisation, chunked full-image renders and PSNR."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from kernels.models.radiance_grid import Cameras, RadianceGrid, samples_for
from kernels.models.scene_box import Box
from kernels.models.views import Views

RENDER_CHUNK = 8192  # rays per forward pass when rendering whole images


@dataclass(frozen=True)
class StagePlan:
    """One coarse-to-fine stage: grid resolution, iterations, rays per batch, learning rate."""

    resolution: int
    iterations: int
    batch: int = 2048
    lr: float = 0.1
    tv_density: float = 1e-4
    tv_color: float = 1e-5


class RaySampler:
    """Random batches of (origin, direction, colour) from the training views; rays are
    made on the fly, so memory stays at the images themselves."""

    def __init__(self, views: Views, indices: list[int], box: Box, seed: int = 0) -> None:
        self.images = torch.from_numpy(np.ascontiguousarray(views.images[indices]))
        self.cameras = Cameras.from_arrays(views.intrinsics[indices],
                                           views.world_to_cam[indices], box.center, box.half)
        self.generator = torch.Generator().manual_seed(seed)

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        count, height, width, _ = self.images.shape
        index = torch.randint(count, (size,), generator=self.generator)
        v = torch.randint(height, (size,), generator=self.generator)
        u = torch.randint(width, (size,), generator=self.generator)
        origins, dirs = self.cameras.rays(index, u.float(), v.float())
        return origins, dirs, self.images[index, v, u]


def train_stage(grid: RadianceGrid, sampler: RaySampler, plan: StagePlan,
                progress: Callable[[int, float], None]) -> float:
    """Optimise ``grid`` for ``plan.iterations`` steps; ``progress(step, loss)`` is called
    now and then. Returns the last smoothed photometric loss (MSE)."""
    optimizer = torch.optim.Adam([
        {"params": [grid.density, grid.color], "lr": plan.lr},
        {"params": [grid.background], "lr": plan.lr},
    ])
    n_samples = samples_for(grid.resolution)
    smoothed = math.nan
    every = max(1, plan.iterations // 20)
    for step in range(plan.iterations):
        origins, dirs, target = sampler.batch(plan.batch)
        color, _ = grid.render(origins, dirs, n_samples, jitter=True)
        mse = ((color - target) ** 2).mean()
        tv_density, tv_color = grid.total_variation()
        loss = mse + plan.tv_density * tv_density + plan.tv_color * tv_color
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        value = float(mse)
        smoothed = value if math.isnan(smoothed) else 0.9 * smoothed + 0.1 * value
        if step % every == 0 or step == plan.iterations - 1:
            progress(step + 1, smoothed)
    return smoothed


@torch.no_grad()
def render_view(grid: RadianceGrid, intrinsics: np.ndarray, world_to_cam: np.ndarray,
                box: Box, height: int, width: int) -> np.ndarray:
    """One (height, width, 3) float32 image of the field from one camera."""
    cameras = Cameras.from_arrays(intrinsics[None], world_to_cam[None], box.center, box.half)
    v, u = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    u, v = u.reshape(-1).float(), v.reshape(-1).float()
    index = torch.zeros(len(u), dtype=torch.long)
    n_samples = samples_for(grid.resolution)
    parts = []
    for start in range(0, len(u), RENDER_CHUNK):
        part = slice(start, start + RENDER_CHUNK)
        origins, dirs = cameras.rays(index[part], u[part], v[part])
        parts.append(grid.render(origins, dirs, n_samples, jitter=False)[0])
    return torch.cat(parts).clamp(0.0, 1.0).view(height, width, 3).numpy()


def psnr(rendered: np.ndarray, target: np.ndarray) -> float:
    mse = float(np.mean((rendered.astype(np.float64) - target) ** 2))
    return 99.0 if mse <= 1e-10 else -10.0 * math.log10(mse)


def held_out_psnr(grid: RadianceGrid, views: Views, held: list[int], box: Box) -> float:
    """Mean PSNR (dB) of the field's renders of the held-out views."""
    height, width = views.size
    scores = [psnr(render_view(grid, views.intrinsics[i], views.world_to_cam[i], box,
                               height, width), views.images[i]) for i in held]
    return float(np.mean(scores)) if scores else math.nan
