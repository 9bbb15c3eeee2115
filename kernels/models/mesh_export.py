"""From a density grid to coloured mesh files: the iso-level, marching cubes, floater
removal, and the glb/obj writers.

The iso-level is chosen from the density distribution by Otsu's method on log density:
the grid is mostly empty space (low density) plus a surface shell (high density), two
modes of ``log(sigma)``; Otsu's level is the one that best separates them (largest
between-class variance). It is never set below the opacity floor: the density at which one
voxel is half opaque (alpha 0.5 across one voxel, sigma = ln 2 / voxel length), so that thin
fog is not meshed and a field of fog alone yields no surface. Only numpy here at module
level: PyMCubes and trimesh are imported where used.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

HISTOGRAM_BINS = 256
FLOATER_FRACTION = 0.05    # keep components with at least this share of the largest's faces


class EmptyFieldError(ValueError):
    """The radiance field holds no surface to mesh."""

    def __init__(self) -> None:
        super().__init__("the radiance field is empty: no surface found")


def otsu_level(values: np.ndarray, bins: int = HISTOGRAM_BINS) -> float:
    """Otsu's threshold of a 1-D sample: the bin edge maximising between-class variance."""
    counts, edges = np.histogram(values, bins=bins)
    centers = (edges[:-1] + edges[1:]) / 2.0
    weight_low = np.cumsum(counts)[:-1].astype(np.float64)
    weight_high = float(counts.sum()) - weight_low
    sums = np.cumsum(counts * centers)[:-1]
    valid = (weight_low > 0) & (weight_high > 0)
    if not valid.any():
        return float(edges[-1])
    mean_low = np.where(valid, sums / np.maximum(weight_low, 1), 0.0)
    mean_high = np.where(valid, (sums[-1] + counts[-1] * centers[-1] - sums)
                         / np.maximum(weight_high, 1), 0.0)
    between = np.where(valid, weight_low * weight_high * (mean_low - mean_high) ** 2, -1.0)
    return float(edges[1:-1][int(np.argmax(between))])


def opacity_floor(resolution: int) -> float:
    """The density (per unit length of the [-1, 1] box) at which one voxel is half opaque."""
    return math.log(2.0) * (resolution - 1) / 2.0


def surface_level(density: np.ndarray) -> float:
    """The iso-level for marching cubes of a cubic density grid (see the module docstring);
    raises EmptyFieldError when no voxel reaches it."""
    floor = opacity_floor(density.shape[0])
    if density.size == 0 or float(density.max()) <= floor:
        raise EmptyFieldError()
    level = math.exp(otsu_level(np.log(np.maximum(density.ravel(), 1e-6))))
    return max(level, floor)


def component_labels(n_vertices: int, faces: np.ndarray) -> np.ndarray:
    """Connected-component label of every vertex (the smallest vertex index in it)."""
    labels = np.arange(n_vertices)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]]])
    while True:
        low = np.minimum(labels[edges[:, 0]], labels[edges[:, 1]])
        before = labels.copy()
        np.minimum.at(labels, edges[:, 0], low)
        np.minimum.at(labels, edges[:, 1], low)
        labels = labels[labels]
        if np.array_equal(labels, before):
            return labels


def drop_floaters(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep the components with at least FLOATER_FRACTION of the largest one's faces;
    vertices are renumbered."""
    if len(faces) == 0:
        return vertices, faces
    face_label = component_labels(len(vertices), faces)[faces[:, 0]]
    names, sizes = np.unique(face_label, return_counts=True)
    kept = names[sizes >= FLOATER_FRACTION * sizes.max()]
    faces = faces[np.isin(face_label, kept)]
    used = np.unique(faces)
    renumber = np.full(len(vertices), -1)
    renumber[used] = np.arange(len(used))
    return vertices[used], renumber[faces]


def grid_to_unit(vertices: np.ndarray, resolution: int) -> np.ndarray:
    """Marching-cubes vertices in (z, y, x) voxel indices → (x, y, z) in [-1, 1]."""
    return vertices[:, ::-1] / (resolution - 1) * 2.0 - 1.0


def marching_cubes(density: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(vertices in unit coordinates, faces) of the density's surface, floaters dropped."""
    import mcubes

    level = surface_level(density)
    vertices, faces = mcubes.marching_cubes(density.astype(np.float64), level)
    if len(faces) == 0:
        raise EmptyFieldError()
    vertices, faces = drop_floaters(np.asarray(vertices), np.asarray(faces, dtype=np.int64))
    return grid_to_unit(vertices, density.shape[0]), faces


def obj_text(vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray) -> str:
    """Wavefront OBJ with per-vertex colours (``v x y z r g b``, colours in [0, 1])."""
    rows = np.hstack([vertices, np.clip(colors, 0.0, 1.0)])
    lines = [f"v {x:.6f} {y:.6f} {z:.6f} {r:.4f} {g:.4f} {b:.4f}" for x, y, z, r, g, b in rows]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]
    return "# nerf2mesh\n" + "\n".join(lines) + "\n"


def write_obj(path: Path, vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray) -> None:
    path.write_text(obj_text(vertices, faces, colors), encoding="ascii")


def write_glb(path: Path, vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray) -> None:
    """Binary glTF with the colours as COLOR_0 (RGBA8)."""
    import trimesh

    rgba = np.hstack([np.clip(colors, 0.0, 1.0) * 255.0, np.full((len(colors), 1), 255.0)])
    mesh = trimesh.Trimesh(vertices=vertices, faces=faces,
                           vertex_colors=np.round(rgba).astype(np.uint8), process=False)
    mesh.export(str(path), file_type="glb")
