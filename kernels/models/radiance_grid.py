"""A voxel-grid radiance field in PyTorch (CPU is enough): a density grid and an RGB grid
sampled trilinearly, rendered by alpha compositing along rays, over a learned background
that depends on the ray's direction only (a small equirectangular environment map: sky,
distant walls, anything outside the box).

Coordinates: the grid spans the unit cube [-1, 1]^3 of a ``scene_box.Box``; rays are
given in those unit coordinates (origin and an unnormalised direction, so that a ray
parameter ``t`` means the same point in world and unit space). Grid tensors are
(1, C, D, H, W) with the last axis along x, so ``grid_sample`` takes (x, y, z) points.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

DENSITY_SCALE = 50.0   # sigma = softplus(raw + DENSITY_SHIFT) * DENSITY_SCALE, per unit length
DENSITY_SHIFT = -8.0   # a fresh grid is nearly transparent (optical depth ~0.03 across the box)
SEED_DENSITY = 8.0     # raw density of voxels holding sparse points (sigma 35 per unit)
ENV_SIZE = (16, 32)    # background map: (elevation, azimuth) cells


def box_interval(origins: torch.Tensor, dirs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Entry and exit parameters of each ray through [-1, 1]^3 (entry clipped at 0);
    a ray that misses has exit <= entry."""
    safe = torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    t_low = (-1.0 - origins) / safe
    t_high = (1.0 - origins) / safe
    near = torch.minimum(t_low, t_high).amax(dim=-1).clamp(min=0.0)
    far = torch.maximum(t_low, t_high).amin(dim=-1)
    return near, far


def composite(sigma: torch.Tensor, rgb: torch.Tensor, deltas: torch.Tensor,
              background: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Alpha compositing of (B, S) densities and (B, S, 3) colours with (B, S) step
    lengths over ``background`` (3,) or (B, 3). Returns the (B, 3) colours and (B,) opacities."""
    alpha = 1.0 - torch.exp(-sigma * deltas)
    ones = torch.ones_like(alpha[:, :1])
    transmittance = torch.cumprod(torch.cat([ones, 1.0 - alpha + 1e-10], dim=1), dim=1)
    weights = alpha * transmittance[:, :-1]
    color = (weights[..., None] * rgb).sum(dim=1)
    opacity = weights.sum(dim=1)
    return color + (1.0 - opacity[:, None]) * background, opacity


class RadianceGrid(torch.nn.Module):
    """Raw density (1, 1, R, R, R) and colour logits (1, 3, R, R, R), plus background logits
    (1, 3, 16, 32) over ray directions."""

    def __init__(self, resolution: int) -> None:
        super().__init__()
        size = (1, 1, resolution, resolution, resolution)
        self.density = torch.nn.Parameter(torch.zeros(size))
        self.color = torch.nn.Parameter(torch.zeros((1, 3) + size[2:]))
        self.background = torch.nn.Parameter(torch.zeros((1, 3) + ENV_SIZE))

    @property
    def resolution(self) -> int:
        return int(self.density.shape[-1])

    def query(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Density (P,) and colour (P, 3) at (P, 3) unit-cube points (zero outside)."""
        volume = torch.cat([self.density, self.color], dim=1)
        samples = F.grid_sample(volume, points.view(1, -1, 1, 1, 3), mode="bilinear",
                                padding_mode="border", align_corners=True)
        samples = samples.view(4, -1)
        inside = (points.abs() <= 1.0).all(dim=-1)
        sigma = F.softplus(samples[0] + DENSITY_SHIFT) * DENSITY_SCALE * inside
        return sigma, torch.sigmoid(samples[1:].t())

    def background_rgb(self, dirs: torch.Tensor) -> torch.Tensor:
        """Background colours (B, 3) seen along directions (B, 3)."""
        unit = dirs / dirs.norm(dim=-1, keepdim=True).clamp(min=1e-9)
        azimuth = torch.atan2(unit[:, 1], unit[:, 0]) / math.pi
        elevation = torch.asin(unit[:, 2].clamp(-1.0, 1.0)) / (math.pi / 2)
        where = torch.stack([azimuth, elevation], dim=-1).view(1, -1, 1, 2)
        logits = F.grid_sample(self.background, where, mode="bilinear",
                               padding_mode="border", align_corners=True)
        return torch.sigmoid(logits.view(3, -1).t())

    def render(self, origins: torch.Tensor, dirs: torch.Tensor, n_samples: int,
               jitter: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Colours (B, 3) and opacities (B,) of rays in unit coordinates; ``jitter`` draws
        stratified samples (training), else bin centres (evaluation)."""
        near, far = box_interval(origins, dirs)
        span = (far - near).clamp(min=0.0)
        offsets = torch.rand(len(origins), n_samples) if jitter else torch.full(
            (len(origins), n_samples), 0.5)
        bins = (torch.arange(n_samples, dtype=origins.dtype) + offsets) / n_samples
        t = near[:, None] + span[:, None] * bins
        points = origins[:, None, :] + t[..., None] * dirs[:, None, :]
        sigma, rgb = self.query(points.reshape(-1, 3))
        step = span * dirs.norm(dim=-1) / n_samples
        deltas = step[:, None].expand(-1, n_samples)
        return composite(sigma.view(-1, n_samples), rgb.view(-1, n_samples, 3), deltas,
                         self.background_rgb(dirs))

    def total_variation(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean squared neighbour differences of the density and of the colour grid."""
        def tv(grid: torch.Tensor) -> torch.Tensor:
            return sum(  # type: ignore[return-value]
                (grid.diff(dim=axis) ** 2).mean() for axis in (2, 3, 4))
        return tv(self.density), tv(self.color)

    @torch.no_grad()
    def seed_points(self, unit_points: np.ndarray, colors: np.ndarray) -> int:
        """Make the voxels holding sparse points (P, 3 in unit coordinates, colours P, 3)
        dense and of the points' colour: a start from structure from motion. Returns how
        many voxels were seeded."""
        inside = np.all(np.abs(unit_points) <= 1.0, axis=1)
        if not inside.any():
            return 0
        scale = self.resolution - 1
        index = np.round((unit_points[inside] + 1.0) / 2.0 * scale).astype(np.int64)
        x, y, z = (torch.from_numpy(index[:, axis]) for axis in range(3))
        self.density[0, 0, z, y, x] = SEED_DENSITY
        rgb = torch.from_numpy(np.clip(colors[inside], 0.05, 0.95)).float()
        self.color[0, :, z, y, x] = torch.logit(rgb).t()
        return int(len(np.unique(index, axis=0)))

    @torch.no_grad()
    def upsampled(self, resolution: int) -> RadianceGrid:
        """A copy at a finer ``resolution`` (trilinear), the background kept."""
        finer = RadianceGrid(resolution)
        size = (resolution, resolution, resolution)
        finer.density.copy_(F.interpolate(self.density, size=size, mode="trilinear",
                                          align_corners=True))
        finer.color.copy_(F.interpolate(self.color, size=size, mode="trilinear",
                                        align_corners=True))
        finer.background.copy_(self.background)
        return finer

    @torch.no_grad()
    def density_numpy(self) -> np.ndarray:
        """Densities (D, H, W) = (z, y, x) as float32."""
        sigma = F.softplus(self.density[0, 0] + DENSITY_SHIFT) * DENSITY_SCALE
        return sigma.numpy().astype(np.float32)

    @torch.no_grad()
    def colors_at(self, unit_points: np.ndarray) -> np.ndarray:
        """Colours (P, 3) in [0, 1] at unit-cube points (P, 3)."""
        points = torch.from_numpy(np.asarray(unit_points, dtype=np.float32))
        if len(points) == 0:
            return np.zeros((0, 3), dtype=np.float32)
        return self.query(points.clamp(-1.0, 1.0))[1].numpy()


@dataclass(frozen=True)
class Cameras:
    """Pinhole cameras as tensors: inverse intrinsics (N, 3, 3), camera-to-world
    rotation (N, 3, 3) and centres (N, 3), the last two already in unit-cube coordinates."""

    k_inv: torch.Tensor
    rotation: torch.Tensor
    centers: torch.Tensor

    @classmethod
    def from_arrays(cls, intrinsics: np.ndarray, world_to_cam: np.ndarray,
                    box_center: np.ndarray, box_half: float) -> Cameras:
        rot = world_to_cam[:, :3, :3].transpose(0, 2, 1)
        centers = -np.einsum("nij,nj->ni", rot, world_to_cam[:, :3, 3])
        return cls(k_inv=torch.from_numpy(np.linalg.inv(intrinsics)).float(),
                   rotation=torch.from_numpy(rot / box_half).float(),
                   centers=torch.from_numpy((centers - box_center) / box_half).float())

    def rays(self, index: torch.Tensor, u: torch.Tensor,
             v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Origins and directions of the rays through pixel centres (u, v) of cameras
        ``index`` (all (B,) tensors)."""
        pixels = torch.stack([u + 0.5, v + 0.5, torch.ones_like(u)], dim=-1)
        cam_dirs = torch.einsum("bij,bj->bi", self.k_inv[index], pixels)
        dirs = torch.einsum("bij,bj->bi", self.rotation[index], cam_dirs)
        return self.centers[index], dirs


def samples_for(resolution: int, limit: int = 192) -> int:
    """Samples per ray: about one per voxel across the box diagonal's half, capped."""
    return int(min(limit, max(32, math.ceil(resolution * 1.0))))
