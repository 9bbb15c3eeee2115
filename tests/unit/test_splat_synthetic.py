"""The synthetic test scene (numpy only: runs in the project venv)."""
from __future__ import annotations

import numpy as np

from kernels.models import synthetic


def test_render_is_deterministic_textured_and_posed() -> None:
    a = synthetic.render(48, 36, 8, n_points=500, supersample=1)
    b = synthetic.render(48, 36, 8, n_points=500, supersample=1)
    assert a.images.shape == (8, 36, 48, 3) and a.images.dtype == np.float32
    assert np.array_equal(a.images, b.images) and np.array_equal(a.points, b.points)
    assert 0.0 <= a.images.min() and a.images.max() <= 1.0
    assert a.images.std(axis=(1, 2)).min() > 0.1  # texture everywhere, no flat frames
    centres = a.camera_centers()
    assert np.allclose(np.linalg.norm(centres, axis=1), 4.0, rtol=0.1)
    assert len(a.points) == 500 and a.colors.shape == (500, 3)


def test_surface_samples_project_onto_pixels_of_their_colour() -> None:
    """A sample point seen in view 0 lands, through K [R|t], on a pixel of its colour:
    the poses follow the OpenCV convention of views.py."""
    views = synthetic.render(80, 60, 4, n_points=4000, supersample=1)
    rot, trans = views.world_to_cam[0, :3, :3], views.world_to_cam[0, :3, 3]
    cam = views.points @ rot.T + trans
    uv = cam @ views.intrinsics[0].T
    uv = uv[:, :2] / uv[:, 2:]
    inside = (cam[:, 2] > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < 80) & (uv[:, 1] >= 0) \
        & (uv[:, 1] < 60)
    px = np.floor(uv[inside]).astype(int)
    seen = views.images[0][px[:, 1], px[:, 0]]
    close = np.abs(seen - views.colors[inside]).max(axis=1) < 0.1
    assert inside.sum() > 500
    assert close.mean() > 0.5  # the rest are occluded from this view or on an edge


def test_split_holds_out_every_eighth_view() -> None:
    views = synthetic.render(16, 12, 48, n_points=10, supersample=1)
    train, held = views.split()
    assert len(held) == 6 and len(train) == 42
