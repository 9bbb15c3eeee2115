"""Scene geometry for the radiance field, in plain numpy: the bounding box the grid covers,
the world's up direction, and orbit cameras for the turntable.

Conventions are those of ``views.py`` (OpenCV: camera +z forward, x right, y down).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernels.models.views import Views

MIN_POINTS = 16          # fewer sparse points than this: derive the box from the cameras
POINT_PERCENTILE = 2.0   # drop this percent of outlying points on each side of each axis
BOX_MARGIN = 1.15        # grow the box by this factor around what it must hold


@dataclass(frozen=True)
class Box:
    """An axis-aligned cube: ``center`` (3,) and ``half`` (half the side length)."""

    center: np.ndarray
    half: float

    def to_unit(self, world: np.ndarray) -> np.ndarray:
        return (world - self.center) / self.half

    def to_world(self, unit: np.ndarray) -> np.ndarray:
        return unit * self.half + self.center


def axes_meeting_point(views: Views) -> np.ndarray:
    """The point nearest (least squares) to every camera's optical axis."""
    centers = views.camera_centers()
    forward = views.world_to_cam[:, 2, :3]  # the camera z axis in world coordinates
    forward = forward / np.linalg.norm(forward, axis=1, keepdims=True)
    projectors = np.eye(3)[None] - forward[:, :, None] * forward[:, None, :]
    lhs = projectors.sum(axis=0)
    rhs = np.einsum("nij,nj->i", projectors, centers)
    return np.asarray(np.linalg.lstsq(lhs, rhs, rcond=None)[0])


def scene_box(views: Views) -> Box:
    """The cube the radiance field lives in. The cameras bound it: around the point they
    look at, as wide as the median view sees at that depth (what lies farther, such as a sky,
    is the background's). Sparse points inside that cube shrink it to their extent when
    there are enough of them."""
    center = axes_meeting_point(views)
    depth = float(np.median(np.linalg.norm(views.camera_centers() - center, axis=1)))
    height, width = views.size
    focal = float(np.median(views.intrinsics[:, 0, 0]))
    half = depth * (min(height, width) / 2.0) / focal
    if not np.isfinite(half) or half <= 0:
        raise ValueError("cannot place the scene: the cameras look at no common volume")
    inside = views.points[np.all(np.abs(views.points - center) <= half, axis=1)]
    if len(inside) >= MIN_POINTS:
        low = np.percentile(inside, POINT_PERCENTILE, axis=0)
        high = np.percentile(inside, 100.0 - POINT_PERCENTILE, axis=0)
        if float(np.max(high - low)) > 0:
            center = (low + high) / 2.0
            half = float(np.max(high - low)) / 2.0
    return Box(center=np.asarray(center, dtype=np.float64), half=half * BOX_MARGIN)


def up_direction(views: Views) -> np.ndarray:
    """The world's up: the mean of the cameras' up axes (-y in OpenCV cameras)."""
    up = -views.world_to_cam[:, 1, :3].sum(axis=0)
    norm = float(np.linalg.norm(up))
    return up / norm if norm > 0 else np.array([0.0, 0.0, 1.0])


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """A world-to-camera matrix (OpenCV) for a camera at ``eye`` looking at ``target``."""
    forward = target - eye
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-8:  # looking straight along up: any right will do
        right = np.cross(forward, np.array([1.0, 0.0, 0.0]))
    right = right / np.linalg.norm(right)
    down = np.cross(forward, right)
    rot = np.stack([right, down, forward])
    matrix = np.eye(4)
    matrix[:3, :3] = rot
    matrix[:3, 3] = -rot @ eye
    return matrix


def orbit_poses(views: Views, center: np.ndarray, n_frames: int) -> np.ndarray:
    """World-to-camera matrices (n_frames, 4, 4) on a circle around ``center`` at the
    cameras' median distance and mean elevation, one full turn."""
    up = up_direction(views)
    offsets = views.camera_centers() - center
    radius = float(np.median(np.linalg.norm(offsets, axis=1)))
    height = float(np.mean(offsets @ up))
    height = float(np.clip(height, -0.9 * radius, 0.9 * radius))
    ring = np.sqrt(max(radius**2 - height**2, 1e-12))
    first = offsets[0] - (offsets[0] @ up) * up
    if np.linalg.norm(first) < 1e-8:
        first = np.cross(up, np.array([1.0, 0.0, 0.0]))
    first = first / np.linalg.norm(first)
    second = np.cross(up, first)
    poses = []
    for angle in np.linspace(0.0, 2.0 * np.pi, n_frames, endpoint=False):
        eye = center + height * up + ring * (np.cos(angle) * first + np.sin(angle) * second)
        poses.append(look_at(eye, center, up))
    return np.stack(poses)
