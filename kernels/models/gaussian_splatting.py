"""The gaussian-splatting pipeline stage the job runner calls: posed views in,
``point_cloud.ply`` and ``thumbnail.png`` out.

Epoch (1..100 from the API) sets the training length: ``epoch`` passes over the training
views, i.e. iterations = epoch x (number of training views), and training stops earlier
when its time budget is spent: SECONDS_PER_EPOCH x epoch, at most TIME_BUDGET (CPU:
15 s per epoch up to 200 s; gsplat: 60 s per epoch up to 1200 s). With the 42 training
views of a 48-frame orbit, Epoch 1-3 is 42-126 iterations and at most 15-45 s of training
on the CPU; from Epoch 14 on the CPU run is the full 200 s (bench/splat_cpu.py measures
that setting), which keeps the whole job of a short clip (frames, structure from motion,
training, export) within 5 minutes on 2 cores.
"""
from __future__ import annotations

import os
import pathlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from kernels.models import gaussians, ply, splat_gpu
from kernels.models.views import Views

TIME_BUDGET_CPU, SECONDS_PER_EPOCH_CPU = 200.0, 15.0
TIME_BUDGET_GPU, SECONDS_PER_EPOCH_GPU = 1200.0, 60.0
OUTPUT = "point_cloud.ply"
THUMBNAIL = "thumbnail.png"


def threads() -> int:
    raw = os.environ.get("KRAKEN_ATLAS_THREADS") or ""
    return int(raw) if raw.isdigit() and int(raw) > 0 else (os.cpu_count() or 1)


def config_for(epoch: int, n_train: int, gpu: bool) -> gaussians.TrainConfig:
    """The training settings of an API ``epoch`` (1..100)."""
    epoch = min(max(int(epoch), 1), 100)
    iterations = epoch * max(n_train, 1)
    budget = min(TIME_BUDGET_GPU, SECONDS_PER_EPOCH_GPU * epoch) if gpu \
        else min(TIME_BUDGET_CPU, SECONDS_PER_EPOCH_CPU * epoch)
    cfg = gaussians.TrainConfig(iterations=iterations, time_budget=budget)
    if gpu:
        cfg.sh_degree = 3
    return cfg


def save_thumbnail(path: pathlib.Path, image: np.ndarray) -> None:
    from PIL import Image
    pixels = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    tmp = path.with_name(path.name + ".tmp")
    Image.fromarray(pixels).save(tmp, format="PNG")
    os.replace(tmp, path)


def run(views: Views, epoch: int, out_dir: pathlib.Path,
        report: Callable[[str, float, str], None], log: Callable[[str], None]) -> dict[str, Any]:
    """Train on ``views`` and write the outputs into ``out_dir``."""
    torch.set_num_threads(threads())
    backend = splat_gpu.select()
    train_ids, held_ids = views.split()
    cfg = config_for(epoch, len(train_ids), backend.name == "gsplat")
    h, w = views.size
    log(f"gaussian splatting: {len(views)} views of {w}x{h} ({len(train_ids)} train, "
        f"{len(held_ids)} held out), {len(views.points)} initial points; renderer "
        f"{backend.name} ({backend.reason}); epoch {epoch} -> {cfg.iterations} iterations, "
        f"time budget {cfg.time_budget:.0f} s, SH degree {cfg.sh_degree}")
    report("train", 0.0, "training gaussians")
    model, stats = gaussians.train(
        views, cfg, backend.rasterize,
        progress=lambda pct, msg: report("train", pct, msg), log=log, device=backend.device)
    log(f"trained {stats.iterations} iterations in {stats.seconds:.1f} s "
        f"({stats.iterations / max(stats.seconds, 1e-9):.2f} it/s), "
        f"{stats.gaussians} gaussians")
    report("export", 0.0, "evaluating and writing the point cloud")
    metrics: dict[str, Any] = {"iterations": stats.iterations,
                               "train_seconds": round(stats.seconds, 2),
                               "gaussians": stats.gaussians, "renderer": backend.name}
    if held_ids:
        scores = gaussians.evaluate(model, views, held_ids, cfg, backend.rasterize)
        metrics["psnr"] = round(float(np.mean(scores)), 2)
        log(f"held-out PSNR: {metrics['psnr']:.2f} dB over {len(held_ids)} views")
    else:
        metrics["psnr"] = None
        log("held-out PSNR: n/a (too few views to hold any out)")
    out_dir.mkdir(parents=True, exist_ok=True)
    ply.write(out_dir / OUTPUT, model.to_cloud())
    report("export", 60.0, "rendering the thumbnail")
    with torch.no_grad():
        cam = gaussians.cameras(views)[0]
        bg = torch.tensor(cfg.background, dtype=torch.float32, device=backend.device)
        image = model.render(cam, bg, cfg.sh_degree, backend.rasterize).image
    save_thumbnail(out_dir / THUMBNAIL, image.cpu().numpy())
    report("export", 100.0, f"{stats.gaussians} gaussians written")
    return {"outputs": {"1": OUTPUT}, "thumbnail": THUMBNAIL, "metrics": metrics}
