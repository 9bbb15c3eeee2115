"""A synthetic scene with known camera poses, rendered by analytic ray casting (numpy only).

The test scene of the generation models: two spheres and two boxes with colourful
procedural textures (hashed value noise and stripes) standing on a textured ground disk
inside a distant textured background sphere, so every pixel carries texture that feature
matchers find and that a model must reproduce. World frame: z up, the objects around the
origin. Cameras orbit the origin (radius about 4, elevation 20-30 degrees with a small
wobble for parallax) and look at the centre; conventions as in ``views.py`` (OpenCV: the
camera looks down +z, x right, y down; pixel centres at integer + 0.5, cx = width / 2).

    render(160, 120, 48)             -> Views with images, poses and surface samples
    write_video(path, 640, 480, 48)  -> an mp4 of the same orbit (needs the ffmpeg binary)

Everything is deterministic: the textures are hashes of the world position, and the
surface samples use a fixed seed. Shading is Lambertian (view independent).
"""
from __future__ import annotations

import pathlib
import subprocess

import numpy as np

from kernels.models.views import Views

SEED = 11
ORBIT_RADIUS = 4.0
LOOK_AT = np.array([0.0, 0.0, 0.35])
HFOV_DEG = 60.0
GROUND_RADIUS = 2.6
SKY_RADIUS = 12.0
LIGHT = np.array([0.45, -0.35, 0.82]) / np.linalg.norm([0.45, -0.35, 0.82])
SPHERES = [  # centre, radius, palette index
    ((0.75, 0.35, 0.55), 0.55, 0),
    ((-0.35, 0.95, 0.35), 0.35, 1),
]
BOXES = [  # centre, half extents, rotation about z (radians), palette index
    ((-0.7, -0.45, 0.4), (0.4, 0.3, 0.4), 0.5, 2),
    ((0.35, -0.95, 0.25), (0.25, 0.25, 0.25), -0.3, 3),
]
GROUND_PALETTE = 4
SKY_PALETTE = 5
PALETTES = np.array([  # (dark, light, stripe) colours per surface
    [[0.75, 0.10, 0.10], [1.00, 0.85, 0.20], [0.10, 0.20, 0.70]],
    [[0.05, 0.45, 0.15], [0.70, 0.95, 0.40], [0.95, 0.95, 0.95]],
    [[0.15, 0.15, 0.65], [0.40, 0.85, 0.95], [0.95, 0.35, 0.05]],
    [[0.55, 0.05, 0.55], [0.95, 0.60, 0.85], [0.05, 0.05, 0.05]],
    [[0.35, 0.25, 0.15], [0.80, 0.70, 0.50], [0.20, 0.45, 0.25]],
    [[0.20, 0.35, 0.60], [0.85, 0.90, 0.95], [0.95, 0.55, 0.25]],
], dtype=np.float32)


def _hash(ix: np.ndarray, iy: np.ndarray, iz: np.ndarray, seed: int) -> np.ndarray:
    """A value in [0, 1) per integer lattice point (uint32 mixing, wraps on overflow)."""
    with np.errstate(over="ignore"):
        h = (ix.astype(np.uint32) * np.uint32(73856093)) ^ (iy.astype(np.uint32) * np.uint32(
            19349663)) ^ (iz.astype(np.uint32) * np.uint32(83492791)) ^ np.uint32(seed * 2654435761
                                                                                  % 2**32)
        h ^= h >> np.uint32(15)
        h *= np.uint32(0x2C1B3C6D)
        h ^= h >> np.uint32(12)
        h *= np.uint32(0x297A2D39)
        h ^= h >> np.uint32(15)
    return (h >> np.uint32(8)).astype(np.float32) / np.float32(2**24)


def value_noise(p: np.ndarray, seed: int) -> np.ndarray:
    """Smooth 3D value noise in [0, 1] at points ``p`` (M, 3) (trilinear, smoothstep)."""
    base = np.floor(p)
    f = (p - base).astype(np.float32)
    f = f * f * (3.0 - 2.0 * f)
    i = base.astype(np.int64)
    out = np.zeros(p.shape[0], dtype=np.float32)
    for dx in (0, 1):
        wx = f[:, 0] if dx else 1.0 - f[:, 0]
        for dy in (0, 1):
            wy = f[:, 1] if dy else 1.0 - f[:, 1]
            for dz in (0, 1):
                wz = f[:, 2] if dz else 1.0 - f[:, 2]
                out += wx * wy * wz * _hash(i[:, 0] + dx, i[:, 1] + dy, i[:, 2] + dz, seed)
    return out


def _texture(p: np.ndarray, palette: int, scale: float) -> np.ndarray:
    """Albedo (M, 3) of surface points ``p`` (M, 3): two octaves of noise blend the
    palette's dark and light colours; a noise-warped soft stripe pattern paints the third."""
    q = p * scale
    n1 = value_noise(q * 3.0, SEED + palette)
    n2 = value_noise(q * 7.0, SEED + 17 * palette + 5)
    mix = np.clip(0.65 * n1 + 0.35 * n2, 0.0, 1.0)
    mix = np.clip((mix - 0.5) * 1.8 + 0.5, 0.0, 1.0)[:, None]
    dark, light, stripe = PALETTES[palette]
    albedo = dark * (1.0 - mix) + light * mix
    phase = q[:, 0] * 2.3 + q[:, 1] * 1.7 + q[:, 2] * 2.9 + 2.5 * n1
    # soft-edged stripes: corners for feature detectors, no aliasing at 160x120
    band = np.clip((np.sin(phase * np.pi * 2.0) - 0.3) / 0.5, 0.0, 1.0).astype(np.float32)
    band = (band * band * (3.0 - 2.0 * band))[:, None]
    return (albedo * (1.0 - band) + stripe * band).astype(np.float32)


def _sphere_hit(o: np.ndarray, d: np.ndarray, c: np.ndarray, r: float) -> np.ndarray:
    """Nearest positive ray parameter to the sphere (inf where missed)."""
    oc = o - c
    b = d @ oc
    disc = b * b - (oc @ oc - r * r)
    t = np.full(d.shape[0], np.inf)
    ok = disc > 0
    s = np.sqrt(np.where(ok, disc, 0.0))
    t0, t1 = -b - s, -b + s
    t = np.where(ok & (t0 > 1e-6), t0, np.where(ok & (t1 > 1e-6), t1, np.inf))
    return t


def _rot_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _box_hit(o: np.ndarray, d: np.ndarray, c: np.ndarray, half: np.ndarray,
             angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Ray parameter (inf where missed) and world normal of an oriented box (slab test)."""
    rot = _rot_z(angle)
    lo = rot.T @ (o - c)
    ld = d @ rot  # rows: rot.T @ d
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / np.where(np.abs(ld) < 1e-12, 1e-12, ld)
    t1 = (-half - lo) * inv
    t2 = (half - lo) * inv
    tmin = np.minimum(t1, t2)
    tmax = np.maximum(t1, t2)
    near = tmin.max(axis=1)
    far = tmax.min(axis=1)
    hit = (far >= near) & (near > 1e-6)
    t = np.where(hit, near, np.inf)
    axis = tmin.argmax(axis=1)
    normal_local = np.zeros_like(ld)
    rows = np.arange(ld.shape[0])
    normal_local[rows, axis] = -np.sign(ld[rows, axis])
    return t, normal_local @ rot.T


def cast(origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Colour (M, 3) float32 and hit point (M, 3) of unit rays ``dirs`` from ``origin``."""
    m = dirs.shape[0]
    best = np.full(m, np.inf)
    surface = np.full(m, -1)
    normals = np.zeros((m, 3))
    candidates: list[tuple[np.ndarray, np.ndarray | None]] = []
    for c, r, _ in SPHERES:
        candidates.append((_sphere_hit(origin, dirs, np.asarray(c), r), None))
    for c, half, angle, _ in BOXES:
        candidates.append(_box_hit(origin, dirs, np.asarray(c), np.asarray(half), angle))
    with np.errstate(divide="ignore", invalid="ignore"):
        tg = np.where(np.abs(dirs[:, 2]) > 1e-12, -origin[2] / dirs[:, 2], np.inf)
    gp = origin[None, :2] + tg[:, None] * dirs[:, :2]
    tg = np.where((tg > 1e-6) & ((gp ** 2).sum(axis=1) < GROUND_RADIUS ** 2), tg, np.inf)
    candidates.append((tg, np.broadcast_to(np.array([0.0, 0.0, 1.0]), (m, 3))))
    for k, (t, n) in enumerate(candidates):
        closer = t < best
        best = np.where(closer, t, best)
        surface = np.where(closer, k, surface)
        if n is not None:
            normals[closer] = n[closer]
    sky = ~np.isfinite(best)
    best[sky] = _sphere_hit(origin, dirs[sky], np.zeros(3), SKY_RADIUS)
    points = origin + best[:, None] * dirs
    colour = np.zeros((m, 3), dtype=np.float32)
    for k, (c, _, pal) in enumerate(SPHERES):
        sel = surface == k
        normals[sel] = (points[sel] - np.asarray(c)) / np.linalg.norm(
            points[sel] - np.asarray(c), axis=1, keepdims=True)
        colour[sel] = _texture(points[sel] - np.asarray(c), pal, 2.0)
    for k, (c, _, _, pal) in enumerate(BOXES, start=len(SPHERES)):
        sel = surface == k
        colour[sel] = _texture(points[sel] - np.asarray(c), pal, 2.2)
    sel = surface == len(candidates) - 1
    colour[sel] = _texture(points[sel], GROUND_PALETTE, 1.2)
    lit = surface >= 0
    shade = 0.35 + 0.65 * np.clip(normals[lit] @ LIGHT, 0.0, 1.0)
    colour[lit] *= shade[:, None].astype(np.float32)
    colour[sky] = _texture(points[sky] / SKY_RADIUS * 3.0, SKY_PALETTE, 1.0)
    return np.clip(colour, 0.0, 1.0), points


def camera(i: int, n_views: int) -> np.ndarray:
    """World-to-camera (4, 4) of orbit view ``i`` of ``n_views`` (OpenCV axes)."""
    theta = 2.0 * np.pi * i / n_views
    elev = np.radians(25.0 + 5.0 * np.sin(3.0 * theta))
    radius = ORBIT_RADIUS * (1.0 + 0.05 * np.cos(2.0 * theta))
    centre = radius * np.array([np.cos(elev) * np.cos(theta), np.cos(elev) * np.sin(theta),
                                np.sin(elev)])
    forward = LOOK_AT - centre
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    w2c = np.eye(4)
    w2c[:3, :3] = np.stack([right, down, forward])
    w2c[:3, 3] = -w2c[:3, :3] @ centre
    return w2c


def intrinsics(width: int, height: int) -> np.ndarray:
    focal = (width / 2.0) / np.tan(np.radians(HFOV_DEG) / 2.0)
    return np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])


def render_view(w2c: np.ndarray, k: np.ndarray, width: int, height: int,
                supersample: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) float32 image and the (H, W, 3) hit point of each pixel centre."""
    s = supersample
    offs = (np.arange(s) + 0.5) / s
    u = (np.arange(width)[:, None] + offs[None, :]).reshape(-1)
    v = (np.arange(height)[:, None] + offs[None, :]).reshape(-1)
    uu, vv = np.meshgrid(u, v)
    cam = np.stack([(uu - k[0, 2]) / k[0, 0], (vv - k[1, 2]) / k[1, 1], np.ones_like(uu)], -1)
    rot, trans = w2c[:3, :3], w2c[:3, 3]
    dirs = cam.reshape(-1, 3) @ rot  # rows: rot.T @ d
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    origin = -rot.T @ trans
    colour, points = cast(origin, dirs)
    img = colour.reshape(height, s, width, s, 3).mean(axis=(1, 3))
    centre = s // 2
    pts = points.reshape(height, s, width, s, 3)[:, centre, :, centre]
    return img.astype(np.float32), pts


def render(width: int = 160, height: int = 120, n_views: int = 48, n_points: int = 4000,
           supersample: int = 2) -> Views:
    """The orbit's views with known poses; ``points``/``colors`` are ``n_points`` surface
    samples seen by the cameras (a known-pose initialisation for the models)."""
    k = intrinsics(width, height)
    images, poses, hits = [], [], []
    for i in range(n_views):
        w2c = camera(i, n_views)
        img, pts = render_view(w2c, k, width, height, supersample)
        images.append(img)
        poses.append(w2c)
        hits.append((pts.reshape(-1, 3), img.reshape(-1, 3)))
    rng = np.random.default_rng(SEED)
    all_pts = np.concatenate([h[0] for h in hits])
    all_col = np.concatenate([h[1] for h in hits])
    pick = rng.choice(all_pts.shape[0], size=min(n_points, all_pts.shape[0]), replace=False)
    return Views(images=np.stack(images), intrinsics=np.repeat(k[None], n_views, axis=0),
                 world_to_cam=np.stack(poses), points=all_pts[pick].astype(np.float64),
                 colors=all_col[pick].astype(np.float64),
                 names=[f"view_{i:03d}" for i in range(n_views)])


def write_video(path: pathlib.Path | str, width: int = 640, height: int = 480,
                n_views: int = 48, fps: int = 12) -> None:
    """Render the orbit and encode it as an H.264 mp4 with the ffmpeg binary."""
    k = intrinsics(width, height)
    cmd = ["ffmpeg", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{width}x{height}", "-r", str(fps), "-i", "-", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", "-crf", "18", str(path)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    try:
        for i in range(n_views):
            img, _ = render_view(camera(i, n_views), k, width, height)
            proc.stdin.write((img * 255.0 + 0.5).astype(np.uint8).tobytes())
    finally:
        proc.stdin.close()
        if proc.wait() != 0:
            raise RuntimeError(f"ffmpeg failed with status {proc.returncode}")
