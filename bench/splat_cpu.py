"""Gaussian-splatting training on the synthetic scene with known poses.

    /usr/bin/python3 -m bench.splat_cpu [--epoch 100] [--threads N] [--size 160x120]

Needs PyTorch (Debian's python3-torch, as in the model images). Renders the 48-view orbit
of kernels/models/synthetic.py, trains on the 42 training views with the pipeline's
settings for --epoch (gaussian_splatting.config_for: Epoch 100 is 4200 iterations or
200 s on the CPU, whichever comes first) and prints the held-out PSNR over the 6 held-out views,
the wall time, the iterations and iterations/s. The CPU rasteriser always; where CUDA
and gsplat are available, also gsplat at --gpu-size (full resolution).

``--video`` measures the whole job instead, as a user's upload runs: the orbit encoded as
a 640x480 mp4, then the job runner (``python3 -m kernels.models.run``): frames →
structure from motion (pycolmap) → training → PLY; it prints the job's result metrics
and its log's PSNR line, and the wall time of the whole job.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from kernels.models import (
    gaussian_splatting,
    gaussians,
    jobfiles,
    splat_cpu,
    splat_gpu,
    synthetic,
)


def bench(label: str, width: int, height: int, epoch: int, seconds: float | None,
          backend: splat_gpu.Backend) -> None:
    t0 = time.perf_counter()
    views = synthetic.render(width, height, 48)
    render_s = time.perf_counter() - t0
    train_ids, held = views.split()
    cfg = gaussian_splatting.config_for(epoch, len(train_ids), backend.name == "gsplat")
    if seconds is not None:
        cfg.time_budget = seconds
    t0 = time.perf_counter()
    model, stats = gaussians.train(views, cfg, backend.rasterize, device=backend.device)
    psnr = float(np.mean(gaussians.evaluate(model, views, held, cfg, backend.rasterize)))
    wall = time.perf_counter() - t0
    print(f"{label}: {width}x{height}, {len(views)} views (scene render {render_s:.1f} s), "
          f"{len(views.points)} initial points")
    print(f"  held-out PSNR  {psnr:6.2f} dB over {len(held)} views")
    print(f"  wall time      {wall:6.1f} s (training {stats.seconds:.1f} s + evaluation)")
    print(f"  iterations     {stats.iterations:6d} ({stats.iterations / stats.seconds:.2f} it/s)"
          f", {stats.gaussians} gaussians at the end")


def bench_video(epoch: int, threads: int) -> None:
    """The whole job on the encoded orbit: video → frames → SfM → training → PLY."""
    with tempfile.TemporaryDirectory(prefix="splat-bench-") as tmp:
        clip = Path(tmp, "orbit.mp4")
        synthetic.write_video(clip, 640, 480, n_views=48, fps=12)
        request = jobfiles.Request(request_id="bench", model="gaussian-splatting",
                                   item_name="orbit", epoch=epoch, resize=False,
                                   input="input/orbit.mp4")
        job = jobfiles.make_job_dir(tmp, request, clip.read_bytes())
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "kernels.models.run", job],
                              env={**os.environ, "KRAKEN_ATLAS_THREADS": str(threads)},
                              capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
        result = json.loads(Path(job, jobfiles.RESULT).read_text())
        log = Path(job, jobfiles.LOG).read_text().splitlines()
    print(f"whole job (640x480 mp4 of 48 frames, Epoch {epoch}): {result['status']} "
          f"{result.get('error') or ''}(exit {proc.returncode})")
    for line in log:
        if "PSNR" in line or "structure from motion" in line or line.startswith("model:"):
            print(f"  log: {line}")
    print(f"  wall time      {wall:6.1f} s for the whole job")
    print(f"  metrics        {json.dumps(result.get('metrics', {}))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epoch", type=int, default=100, help="the API's Epoch (1..100)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="training time budget instead of the Epoch's")
    parser.add_argument("--threads", type=int,
                        default=int(os.environ.get("KRAKEN_ATLAS_THREADS") or 0)
                        or os.cpu_count() or 1)
    parser.add_argument("--size", default="160x120")
    parser.add_argument("--gpu-size", default="640x480")
    parser.add_argument("--video", action="store_true",
                        help="the whole job from an mp4 (frames, SfM, training)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.size.split("x"))
    print(f"torch {torch.__version__}, {args.threads} threads, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    if args.video:
        bench_video(args.epoch, args.threads)
        return
    cpu = splat_gpu.Backend("cpu", "cpu", splat_cpu.rasterize, "benchmark")
    bench("CPU rasteriser", width, height, args.epoch, args.seconds, cpu)
    gpu = splat_gpu.select()
    if gpu.name == "gsplat":
        gw, gh = (int(v) for v in args.gpu_size.split("x"))
        bench(f"gsplat ({gpu.reason})", gw, gh, args.epoch, args.seconds, gpu)
    else:
        print(f"gsplat: not run ({gpu.reason})")


if __name__ == "__main__":
    main()
