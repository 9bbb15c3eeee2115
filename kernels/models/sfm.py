"""Structure from motion: frames of a video in, posed :class:`Views` out (pycolmap, CPU).

SIFT features on every frame (one shared PINHOLE camera, so the images need no
undistortion), exhaustive matching for up to ``EXHAUSTIVE_MAX`` frames and sequential
matching (overlap, no loop detection) beyond, incremental mapping; the reconstruction
with the most registered frames wins. SfM runs at ``SFM_LONG_SIDE`` pixels; the returned
views carry the frames at the working size with the intrinsics scaled to it.

The scene is then normalised (see :func:`normalise`): the origin at the point the
cameras look at, +z along the cameras' mean up direction, and the median camera distance
``NORM_RADIUS`` — the models can assume an object near the origin seen from about 3 units.
"""
from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pycolmap
from PIL import Image

from kernels.models.views import Views

SFM_LONG_SIDE = 640
EXHAUSTIVE_MAX = 60
SEQUENTIAL_OVERLAP = 12
MAX_FEATURES = 4096
MIN_REGISTERED = 5
MIN_FRACTION = 0.5
NORM_RADIUS = 3.0

Report = Callable[[float, str], None]


class SfmError(Exception):
    """Structure from motion could not pose the frames (one line, shown to the user)."""


def resize(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(N, H, W, 3) float32 frames resized to ``size`` = (width, height) (box filter)."""
    if (images.shape[2], images.shape[1]) == size:
        return images
    out = [np.asarray(Image.fromarray(_to_uint8(img)).resize(size, Image.Resampling.BOX))
           for img in images]
    return np.stack(out).astype(np.float32) / 255.0


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def scaled_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    scale = min(1.0, long_side / max(width, height))
    return max(2, round(width * scale)), max(2, round(height * scale))


def reconstruct(frames: np.ndarray, working_size: tuple[int, int], report: Report,
                log: Callable[[str], None], threads: int = 1,
                scratch: Path | None = None) -> Views:
    """Pose ``frames`` (N, H, W, 3) float32 in video order; only registered frames come
    back, in video order, resized to ``working_size`` = (width, height). The work files
    live in a temporary directory (under ``scratch`` when given), removed at the end."""
    pycolmap.logging.logtostderr = True        # no glog files left in /tmp
    pycolmap.logging.minloglevel = 1            # warnings and errors only
    n = len(frames)
    sfm_size = scaled_size(frames.shape[2], frames.shape[1], SFM_LONG_SIDE)
    with tempfile.TemporaryDirectory(prefix="kraken-sfm-", dir=scratch) as tmp:
        image_dir, database = Path(tmp, "images"), Path(tmp, "database.db")
        image_dir.mkdir()
        names = [f"frame_{i:04d}.png" for i in range(n)]
        for name, image in zip(names, resize(frames, sfm_size), strict=True):
            Image.fromarray(_to_uint8(image)).save(image_dir / name, compress_level=1)
        report(2, f"extracting features from {n} frames at {sfm_size[0]}x{sfm_size[1]}")
        _extract(database, image_dir, threads)
        report(30, "matching features")
        _match(database, n, threads)
        report(50, "mapping")
        recon = _map(database, image_dir, Path(tmp, "sparse"), n, threads, report)
        log(f"sfm: {recon.summary()}")
        views = _to_views(recon, names, frames, sfm_size, working_size)
    registered = len(views)
    if registered < max(MIN_REGISTERED, math.ceil(MIN_FRACTION * n)):
        raise SfmError(f"structure from motion registered {registered} of {n} frames")
    log(f"sfm: registered {registered} of {n} frames, {len(views.points)} points")
    report(100, f"registered {registered} of {n} frames")
    return normalise(views)


def _extract(database: Path, image_dir: Path, threads: int) -> None:
    options = pycolmap.FeatureExtractionOptions()
    options.num_threads = threads
    options.sift.max_num_features = MAX_FEATURES
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = "PINHOLE"
    pycolmap.extract_features(database, image_dir, camera_mode=pycolmap.CameraMode.SINGLE,
                              reader_options=reader, extraction_options=options,
                              device=pycolmap.Device.cpu)


def _match(database: Path, n: int, threads: int) -> None:
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = threads
    if n <= EXHAUSTIVE_MAX:
        pycolmap.match_exhaustive(database, matching_options=matching,
                                  device=pycolmap.Device.cpu)
        return
    pairing = pycolmap.SequentialPairingOptions()
    pairing.overlap = SEQUENTIAL_OVERLAP
    pairing.loop_detection = False
    pycolmap.match_sequential(database, matching_options=matching, pairing_options=pairing,
                              device=pycolmap.Device.cpu)


def _map(database: Path, image_dir: Path, out: Path, n: int, threads: int,
         report: Report) -> pycolmap.Reconstruction:
    out.mkdir()
    options = pycolmap.IncrementalPipelineOptions()
    options.num_threads = threads
    options.min_model_size = 3
    seen = [0]

    def next_image() -> None:
        seen[0] += 1
        report(50 + 50 * min(seen[0], n) / n, f"mapping: {min(seen[0], n)} of {n} frames")
    recons = pycolmap.incremental_mapping(database, image_dir, out, options,
                                    next_image_callback=next_image)
    if not recons:
        raise SfmError(f"structure from motion registered 0 of {n} frames")
    return max(recons.values(), key=lambda r: r.num_reg_images())


def _to_views(recon: pycolmap.Reconstruction, names: list[str], frames: np.ndarray,
              sfm_size: tuple[int, int], working_size: tuple[int, int]) -> Views:
    by_name = {image.name: image for image in recon.images.values()
               if image.has_pose}
    order = [i for i, name in enumerate(names) if name in by_name]
    sx, sy = working_size[0] / sfm_size[0], working_size[1] / sfm_size[1]
    scale = np.diag([sx, sy, 1.0])
    intrinsics, poses = [], []
    for i in order:
        image = by_name[names[i]]
        intrinsics.append(scale @ image.camera.calibration_matrix())
        w2c = np.eye(4)
        w2c[:3, :] = image.cam_from_world().matrix()
        poses.append(w2c)
    points = recon.points3D.values()
    xyz = np.array([p.xyz for p in points], dtype=np.float64).reshape(-1, 3)
    rgb = np.array([p.color for p in points], dtype=np.float64).reshape(-1, 3) / 255.0
    return Views(images=resize(frames[order], working_size),
                 intrinsics=np.array(intrinsics, dtype=np.float64).reshape(-1, 3, 3),
                 world_to_cam=np.array(poses, dtype=np.float64).reshape(-1, 4, 4),
                 points=xyz, colors=rgb, names=[names[i] for i in order])


def focus_point(views: Views) -> np.ndarray:
    """The point nearest (least squares) to every camera's optical axis; the camera
    centroid when the axes are near parallel (a sideways pan)."""
    centres = views.camera_centers()
    axes = views.world_to_cam[:, 2, :3]          # +z of each camera in world coordinates
    system, rhs = np.zeros((3, 3)), np.zeros(3)
    for centre, axis in zip(centres, axes, strict=True):
        proj = np.eye(3) - np.outer(axis, axis)
        system += proj
        rhs += proj @ centre
    if np.linalg.cond(system) > 1e4:
        return centres.mean(axis=0)
    return np.linalg.solve(system, rhs)


def _rotation_to_z(up: np.ndarray) -> np.ndarray:
    up = up / np.linalg.norm(up)
    z = np.array([0.0, 0.0, 1.0])
    v, c = np.cross(up, z), float(up @ z)
    if c < -1.0 + 1e-9:
        return np.diag([1.0, -1.0, -1.0])
    vx = np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
    return np.eye(3) + vx + vx @ vx / (1.0 + c)


def normalise(views: Views) -> Views:
    """Views in the normalised frame x' = s R (x - c): c the focus point, R turns the
    cameras' mean up (-y) to +z, s puts the median camera at ``NORM_RADIUS``."""
    centre = focus_point(views)
    rot = _rotation_to_z(-views.world_to_cam[:, 1, :3].mean(axis=0))
    dist = np.median(np.linalg.norm(views.camera_centers() - centre, axis=1))
    s = NORM_RADIUS / max(float(dist), 1e-9)
    w2c = views.world_to_cam.copy()
    old_rot, old_t = w2c[:, :3, :3].copy(), w2c[:, :3, 3].copy()
    w2c[:, :3, :3] = old_rot @ rot.T
    w2c[:, :3, 3] = s * (old_t + np.einsum("nij,j->ni", old_rot, centre))
    points = s * (views.points - centre) @ rot.T
    keep = np.linalg.norm(points, axis=1) < 4.0 * NORM_RADIUS   # far stray points
    return Views(images=views.images, intrinsics=views.intrinsics, world_to_cam=w2c,
                 points=points[keep], colors=views.colors[keep], names=views.names)
