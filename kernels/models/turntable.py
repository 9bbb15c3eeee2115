"""A turntable of the radiance field: frames on a circle around the object, saved as a
looping GIF, plus the first frame as the job's thumbnail."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from kernels.models.grid_training import render_view
from kernels.models.radiance_grid import RadianceGrid
from kernels.models.scene_box import Box, orbit_poses
from kernels.models.views import Views

FRAMES = 24
MAX_WIDTH = 240           # frames are rendered at most this wide (the views' aspect kept)
FRAME_MS = 80


def frame_camera(views: Views) -> tuple[np.ndarray, int, int]:
    """Intrinsics and (height, width) of the turntable camera: view 0's, scaled down."""
    height, width = views.size
    scale = min(1.0, MAX_WIDTH / width)
    intrinsics = views.intrinsics[0].copy()
    intrinsics[:2] *= scale
    return intrinsics, max(1, round(height * scale)), max(1, round(width * scale))


def render_turntable(grid: RadianceGrid, views: Views, box: Box, n_frames: int = FRAMES,
                     progress: Callable[[int], None] = lambda done: None) -> list[np.ndarray]:
    """``n_frames`` uint8 RGB frames orbiting the box centre."""
    intrinsics, height, width = frame_camera(views)
    frames = []
    for done, pose in enumerate(orbit_poses(views, box.center, n_frames), start=1):
        image = render_view(grid, intrinsics, pose, box, height, width)
        frames.append(np.round(image * 255.0).astype(np.uint8))
        progress(done)
    return frames


def save_gif(frames: list[np.ndarray], path: Path) -> None:
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:],
                   duration=FRAME_MS, loop=0)


def save_png(frame: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(frame).save(path, format="PNG")
