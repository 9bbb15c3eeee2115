"""nerf2mesh: posed views → a voxel radiance field (two coarse-to-fine stages) → coloured
meshes (glb, obj) and a turntable GIF.

Epoch → work (``plan_for``): stage 0 trains a COARSE³ grid for ``100 + 100·epoch``
iterations and gives mesh_0; stage 1 upsamples it to FINE³ and trains
``25 + 25·epoch`` more iterations and gives mesh_1; 2,048 rays per iteration.
The coarse grid starts from the sparse points (their voxels dense and of their colour).
Epoch 1 is 200 + 50 iterations, epoch 3 is 400 + 100 (a fine iteration costs two to four
coarse ones), epoch 100 is 10,100 + 2,525. Time per iteration does not depend on the image
size (a fixed number of rays); see docs/benchmarks.md for the measured wall times.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kernels.models.scene_box import Box, scene_box
from kernels.models.views import Views

if TYPE_CHECKING:
    from kernels.models.radiance_grid import RadianceGrid

COARSE = 40
FINE = 80
IMAGE_BUDGET_BYTES = 8 << 30   # the training images must fit in this
Report = Callable[[str, float, str], None]
Log = Callable[[str], None]


def plan_for(epoch: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """((resolution, iterations) of stage 0, (resolution, iterations) of stage 1)."""
    if not 1 <= epoch <= 100:
        raise ValueError(f"epoch must be 1..100, not {epoch}")
    return (COARSE, 100 + 100 * epoch), (FINE, 25 + 25 * epoch)


def check_views(views: Views) -> tuple[list[int], list[int]]:
    if views.images.nbytes > IMAGE_BUDGET_BYTES:
        raise ValueError(f"the views take {views.images.nbytes >> 20} MiB, over the "
                         f"{IMAGE_BUDGET_BYTES >> 20} MiB image budget: resize the input")
    train, held = views.split()
    if len(train) < 2:
        raise ValueError(f"nerf2mesh needs at least 2 training views, got {len(train)}")
    return train, held


def run(views: Views, epoch: int, out_dir: Path, report: Report, log: Log) -> dict:
    import torch

    from kernels.models import grid_training as training
    from kernels.models import radiance_grid

    torch.set_num_threads(int(os.environ.get("KRAKEN_ATLAS_THREADS") or os.cpu_count() or 1))
    torch.manual_seed(0)
    started = time.monotonic()
    train, held = check_views(views)
    box = scene_box(views)
    log(f"nerf2mesh: {len(train)} training views, {len(held)} held out, box centre "
        f"{np.round(box.center, 3).tolist()} half-size {box.half:.3f}")
    sampler = training.RaySampler(views, train, box)
    grids = []
    grid = radiance_grid.RadianceGrid(plan_for(epoch)[0][0])
    if len(views.points) == len(views.colors) > 0:
        seeded = grid.seed_points(box.to_unit(views.points), views.colors)
        log(f"seeded {seeded} voxels from {len(views.points)} sparse points")
    for number, ((resolution, iterations), (low, high)) in enumerate(
            zip(plan_for(epoch), ((0.0, 35.0), (35.0, 75.0)), strict=True)):
        if grid.resolution != resolution:
            grid = grid.upsampled(resolution)
        grids.append(grid)
        stage_started = time.monotonic()

        def progress(step: int, loss: float, n: int = number, total: int = iterations,
                     a: float = low, b: float = high) -> None:
            report("train", a + (b - a) * step / total,
                   f"stage {n}: step {step}/{total}, loss {loss:.5f}")

        loss = training.train_stage(grid, sampler, training.StagePlan(resolution, iterations),
                                    progress)
        log(f"stage {number}: grid {resolution}^3, {iterations} iterations, loss {loss:.5f}, "
            f"{time.monotonic() - stage_started:.1f} s")
    score = round(training.held_out_psnr(grid, views, held, box), 2) if held else None
    log(f"held-out PSNR: {score:.2f} dB over {len(held)} views" if score is not None
        else "held-out PSNR: none (too few views to hold any out)")
    vertices = export_meshes(grids, box, out_dir, report, log)
    export_turntable(grid, views, box, out_dir, report)
    seconds = round(time.monotonic() - started, 1)
    log(f"nerf2mesh done in {seconds} s")
    return {"outputs": {"1": "mesh_1.glb", "2": "mesh_0.glb", "3": "turntable.gif"},
            "thumbnail": "thumbnail.png",
            "metrics": {"psnr": score, "vertices": vertices, "seconds": seconds}}


def export_meshes(grids: list[RadianceGrid], box: Box, out_dir: Path, report: Report,
                  log: Log) -> int:
    """mesh_0.glb from the coarse grid, mesh_1.glb and mesh_1.obj from the fine one;
    returns mesh_1's vertex count."""
    from kernels.models import mesh_export

    count = 0
    for number, grid in enumerate(grids):
        report("mesh", 75.0 + 5.0 * number, f"marching cubes on the stage {number} grid")
        unit, faces = mesh_export.marching_cubes(grid.density_numpy())
        colors = grid.colors_at(unit)
        world = box.to_world(unit)
        mesh_export.write_glb(out_dir / f"mesh_{number}.glb", world, faces, colors)
        if number == len(grids) - 1:
            mesh_export.write_obj(out_dir / f"mesh_{number}.obj", world, faces, colors)
            count = len(world)
        log(f"mesh_{number}: {len(world)} vertices, {len(faces)} faces")
    return count


def export_turntable(grid: RadianceGrid, views: Views, box: Box, out_dir: Path,
                     report: Report) -> None:
    from kernels.models import turntable

    def progress(done: int) -> None:
        if done % 6 == 0:
            report("export", 85.0 + 15.0 * done / turntable.FRAMES,
                   f"turntable frame {done}/{turntable.FRAMES}")

    frames = turntable.render_turntable(grid, views, box, progress=progress)
    turntable.save_gif(frames, out_dir / "turntable.gif")
    turntable.save_png(frames[0], out_dir / "thumbnail.png")
