"""Self-test of nerf2mesh, run where torch is (the nerf2mesh image, or Debian's python3):

    python3 -m kernels.models.selftest_nerf [--size 96x72] [--views 24] [--epoch 1]

Checks the volume renderer against the analytic transmittance of a constant-density box,
then runs the whole pipeline on the synthetic scene and checks the held-out PSNR gain, the
exported meshes (vertex colours, bounding box near the origin) and the turntable GIF.
Prints one line per check and exits non-zero on the first failure.
"""
from __future__ import annotations

import argparse
import math
import pathlib
import sys
import tempfile

import numpy as np

MIN_PSNR = 15.0       # held-out PSNR after epoch 1 at 96x72 (measured 16.1-16.3 dB)
MIN_PSNR_GAIN = 2.0   # over the untrained field's (13.1 dB measured)


class CheckFailed(Exception):
    pass


def check(condition: bool, what: str) -> None:
    if not condition:
        raise CheckFailed(what)
    print(f"ok: {what}", flush=True)


def check_transmittance() -> None:
    import torch

    from kernels.models.radiance_grid import DENSITY_SCALE, DENSITY_SHIFT, RadianceGrid

    grid = RadianceGrid(8)
    with torch.no_grad():
        grid.density.fill_(3.4)
        grid.color.fill_(30.0)         # white
        grid.background.fill_(-30.0)   # black
    origins = torch.tensor([[-3.0, 0.0, 0.0], [-3.0, 0.5, 0.5], [0.0, -3.0, 3.0]])
    dirs = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, 1.0, 0.0]])
    color, opacity = grid.render(origins, dirs, 64, jitter=True)
    sigma = math.log1p(math.exp(3.4 + DENSITY_SHIFT)) * DENSITY_SCALE
    expected = 1.0 - math.exp(-sigma * 2.0)  # two units of path through the box
    got = [float(v) for v in opacity]
    check(abs(got[0] - expected) < 1e-4 and abs(got[1] - expected) < 1e-4,
          f"constant density: opacity {got[0]:.5f} = 1 - exp(-sigma * 2) = {expected:.5f}")
    check(float(color[0].mean() - opacity[0]).__abs__() < 1e-4,
          "white field over black background: colour equals opacity")
    check(got[2] < 1e-6, "a ray missing the box sees only the background")


def check_empty_field() -> None:
    from kernels.models.mesh_export import EmptyFieldError, surface_level

    try:
        surface_level(np.zeros((16, 16, 16), dtype=np.float32))
    except EmptyFieldError as error:
        check("no surface found" in str(error), f"empty field refused: {error}")
        return
    raise CheckFailed("an empty field was meshed")


def check_pipeline(width: int, height: int, n_views: int, epoch: int) -> None:
    import trimesh
    from PIL import Image

    from kernels.models import nerf2mesh, synthetic
    from kernels.models.grid_training import held_out_psnr
    from kernels.models.radiance_grid import RadianceGrid
    from kernels.models.scene_box import scene_box

    views = synthetic.render(width, height, n_views)
    before = held_out_psnr(RadianceGrid(8), views, views.split()[1], scene_box(views))
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp)
        result = nerf2mesh.run(views, epoch, out, lambda stage, percent, message: None, print)
        psnr = result["metrics"]["psnr"]
        check(psnr >= MIN_PSNR and psnr >= before + MIN_PSNR_GAIN,
              f"held-out PSNR {before:.2f} dB untrained -> {psnr:.2f} dB trained "
              f"(need >= {MIN_PSNR} and +{MIN_PSNR_GAIN})")
        for name in ("mesh_1.glb", "mesh_0.glb", "mesh_1.obj"):
            mesh = trimesh.load(out / name, force="mesh")
            check(isinstance(mesh, trimesh.Trimesh), f"{name} loads as one mesh")
            assert isinstance(mesh, trimesh.Trimesh)
            visual = mesh.visual
            check(isinstance(visual, trimesh.visual.ColorVisuals) and visual.kind == "vertex",
                  f"{name} has vertex colours")
            assert isinstance(visual, trimesh.visual.ColorVisuals)
            colors = np.asarray(visual.vertex_colors)
            check(bool(len(colors) == len(mesh.vertices) > 100 and np.ptp(colors[:, :3]) > 0),
                  f"{name}: {len(mesh.vertices)} coloured vertices")
            low, high = mesh.bounds
            check(bool(np.all(np.abs(low) < 4.0) and np.all(np.abs(high) < 4.0)
                       and np.all(high - low > 0.5)),
                  f"{name}: bounding box {np.round(low, 2)}..{np.round(high, 2)} near the origin")
        with Image.open(out / "turntable.gif") as gif:
            check(gif.n_frames == 24, f"turntable.gif has {gif.n_frames} frames")
        with Image.open(out / "thumbnail.png") as thumb:
            check(thumb.size[0] > 0, f"thumbnail.png {thumb.size}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="selftest_nerf")
    parser.add_argument("--size", default="96x72")
    parser.add_argument("--views", type=int, default=24)
    parser.add_argument("--epoch", type=int, default=1)
    args = parser.parse_args(argv)
    width, height = (int(part) for part in args.size.split("x"))
    try:
        check_transmittance()
        check_empty_field()
        check_pipeline(width, height, args.views, args.epoch)
    except CheckFailed as failure:
        print(f"FAILED: {failure}", flush=True)
        return 1
    print("selftest_nerf: all checks passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
