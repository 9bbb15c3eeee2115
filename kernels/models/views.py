"""Posed views: the one data structure between the front end (frames → structure from
motion, or a synthetic scene with known poses) and the models that train on it.

Conventions (OpenCV/COLMAP): a camera looks down its +z axis, x right, y down;
``world_to_cam`` maps world points to camera coordinates (x_cam = R x_world + t);
pixel = K @ x_cam / z. Images are float32 RGB in [0, 1], shape (H, W, 3).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

HOLDOUT_EVERY = 8  # every 8th view is held out for PSNR (the reference implementation's rule)


@dataclass
class Views:
    images: np.ndarray          # (N, H, W, 3) float32 in [0, 1]
    intrinsics: np.ndarray      # (N, 3, 3) float64
    world_to_cam: np.ndarray    # (N, 4, 4) float64
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # (P, 3) sparse
    colors: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # (P, 3) in [0, 1]
    names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of every image."""
        return int(self.images.shape[1]), int(self.images.shape[2])

    def camera_centers(self) -> np.ndarray:
        rot = self.world_to_cam[:, :3, :3]
        trans = self.world_to_cam[:, :3, 3]
        return -np.einsum("nji,nj->ni", rot, trans)

    def split(self) -> tuple[list[int], list[int]]:
        """(train, held-out) view indices; held out: every HOLDOUT_EVERY-th view."""
        held = [i for i in range(len(self)) if i % HOLDOUT_EVERY == HOLDOUT_EVERY // 2]
        train = [i for i in range(len(self)) if i not in set(held)]
        return train, held
