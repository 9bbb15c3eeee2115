"""The numpy parts of nerf2mesh: scene box, orbit cameras, iso-level, floaters, OBJ text,
and the epoch plan (torch and the mesh libraries are not needed here)."""
from __future__ import annotations

import numpy as np
import pytest

from kernels.models import mesh_export, nerf2mesh, scene_box
from kernels.models.views import Views


def orbit_views(n: int = 12, radius: float = 4.0, points: np.ndarray | None = None) -> Views:
    k = np.array([[100.0, 0, 80], [0, 100.0, 60], [0, 0, 1]])
    center = np.array([0.5, -0.5, 0.2])
    poses = [scene_box.look_at(center + radius * np.array([np.cos(a), np.sin(a), 0.4]),
                               center, np.array([0.0, 0.0, 1.0]))
             for a in np.linspace(0, 2 * np.pi, n, endpoint=False)]
    return Views(images=np.zeros((n, 120, 160, 3), np.float32),
                 intrinsics=np.repeat(k[None], n, axis=0), world_to_cam=np.stack(poses),
                 points=np.zeros((0, 3)) if points is None else points)


def test_the_box_is_centred_where_the_cameras_look() -> None:
    box = scene_box.scene_box(orbit_views())
    assert np.allclose(box.center, [0.5, -0.5, 0.2], atol=1e-6)
    assert 1.0 < box.half < 3.5  # what a view 4.3 units away sees, plus the margin


def test_points_far_away_do_not_widen_the_box() -> None:
    rng = np.random.default_rng(0)
    near = rng.uniform(-0.3, 0.3, (200, 3)) + [0.5, -0.5, 0.2]
    sky = rng.normal(size=(200, 3)) * 50.0
    box = scene_box.scene_box(orbit_views(points=np.vstack([near, sky])))
    assert box.half < 0.6
    assert np.allclose(box.center, [0.5, -0.5, 0.2], atol=0.1)


def test_orbit_cameras_look_at_the_centre_from_a_full_circle() -> None:
    views = orbit_views()
    center = np.array([0.5, -0.5, 0.2])
    poses = scene_box.orbit_poses(views, center, 24)
    assert poses.shape == (24, 4, 4)
    in_camera = np.einsum("nij,j->ni", poses[:, :3, :3], center) + poses[:, :3, 3]
    assert np.allclose(in_camera[:, :2], 0.0, atol=1e-9) and np.all(in_camera[:, 2] > 0)
    eyes = Views(images=np.zeros((24, 1, 1, 3)), intrinsics=np.zeros((24, 3, 3)),
                 world_to_cam=poses).camera_centers()
    assert len(np.unique(np.round(eyes, 6), axis=0)) == 24


def test_otsu_separates_two_modes() -> None:
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.normal(0.0, 0.3, 9000), rng.normal(5.0, 0.3, 1000)])
    assert 1.0 < mesh_export.otsu_level(values) < 4.0


def test_the_level_never_drops_below_the_opacity_floor() -> None:
    density = np.full((32, 32, 32), 1.0, np.float32)
    density[10:20, 10:20, 10:20] = 8.0  # fog: no voxel half opaque (floor 10.7)
    with pytest.raises(mesh_export.EmptyFieldError, match="no surface found"):
        mesh_export.surface_level(density)
    density[12:18, 12:18, 12:18] = 500.0
    level = mesh_export.surface_level(density)
    assert mesh_export.opacity_floor(32) <= level < 500.0


def test_an_empty_field_is_refused_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="the radiance field is empty: no surface found"):
        mesh_export.surface_level(np.zeros((8, 8, 8), np.float32))


def test_small_floaters_are_dropped_and_vertices_renumbered() -> None:
    big = np.array([[0, 1, 2], [0, 2, 3], [0, 3, 4], [0, 4, 5], [0, 5, 1]] * 5)
    speck = np.array([[6, 7, 8]])
    vertices = np.arange(9 * 3, dtype=float).reshape(9, 3)
    kept_vertices, kept_faces = mesh_export.drop_floaters(vertices, np.vstack([big, speck]))
    assert len(kept_faces) == len(big) and len(kept_vertices) == 6
    assert kept_faces.max() == 5 and np.array_equal(kept_vertices, vertices[:6])


def test_grid_indices_map_to_the_unit_cube_in_xyz_order() -> None:
    corners = np.array([[0.0, 0.0, 0.0], [15.0, 0.0, 0.0], [0.0, 0.0, 15.0]])
    unit = mesh_export.grid_to_unit(corners, 16)
    assert np.allclose(unit, [[-1, -1, -1], [-1, -1, 1], [1, -1, -1]])


def test_obj_text_carries_vertex_colours() -> None:
    text = mesh_export.obj_text(np.eye(3), np.array([[0, 1, 2]]),
                                np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 2.0]]))
    lines = text.splitlines()
    assert lines[1] == "v 1.000000 0.000000 0.000000 1.0000 0.0000 0.0000"
    assert lines[3].endswith("0.0000 0.0000 1.0000")  # clipped to [0, 1]
    assert lines[4] == "f 1 2 3"


def test_epochs_map_to_two_stages_of_growing_length() -> None:
    (coarse, first), (fine, second) = nerf2mesh.plan_for(1)
    assert coarse < fine and (first, second) == (200, 50)
    assert nerf2mesh.plan_for(100)[0][1] > 10 * first
    with pytest.raises(ValueError, match="epoch must be 1..100"):
        nerf2mesh.plan_for(0)
