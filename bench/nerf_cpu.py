"""nerf2mesh on the CPU: the synthetic scene (kernels/models/synthetic.py), the whole
pipeline (train both stages, mesh, export, turntable), held-out PSNR, vertices, wall time.

    /usr/bin/python3 -m bench.nerf_cpu [--size 160x120] [--views 48] [--epoch 1] [--threads 2]

Needs torch, PyMCubes, trimesh and Pillow (Debian's python3 here, or the nerf2mesh image);
the project venv has none of them. As a baseline measured in the same run it also times
one training iteration alone, since this machine is shared and its load varies.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.nerf_cpu")
    parser.add_argument("--size", default="160x120")
    parser.add_argument("--views", type=int, default=48)
    parser.add_argument("--epoch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    os.environ["KRAKEN_ATLAS_THREADS"] = str(args.threads)
    width, height = (int(part) for part in args.size.split("x"))

    from kernels.models import grid_training, nerf2mesh, synthetic
    from kernels.models.radiance_grid import RadianceGrid
    from kernels.models.scene_box import scene_box

    views = synthetic.render(width, height, args.views)
    box = scene_box(views)
    sampler = grid_training.RaySampler(views, views.split()[0], box)
    plan = grid_training.StagePlan(resolution=nerf2mesh.COARSE, iterations=10)
    started = time.monotonic()
    grid_training.train_stage(RadianceGrid(plan.resolution), sampler, plan, lambda step, loss: None)
    per_iteration = (time.monotonic() - started) / plan.iterations

    with tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        result = nerf2mesh.run(views, args.epoch, pathlib.Path(tmp),
                               lambda stage, percent, message: None, print)
        wall = time.monotonic() - started
        sizes = {p.name: p.stat().st_size for p in pathlib.Path(tmp).iterdir()}
    metrics = result["metrics"]
    print(f"nerf2mesh {width}x{height}, {args.views} views, epoch {args.epoch}, "
          f"{args.threads} threads: held-out PSNR {metrics['psnr']:.2f} dB, "
          f"mesh_1 {metrics['vertices']} vertices, wall {wall:.1f} s "
          f"(baseline: one coarse iteration {per_iteration * 1000:.0f} ms); files {sizes}")


if __name__ == "__main__":
    main()
