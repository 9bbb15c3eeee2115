"""Gaussian-splatting training on the synthetic scene with known poses.

    /usr/bin/python3 -m bench.splat_cpu [--epoch 100] [--threads N] [--size 160x120]

Needs PyTorch (Debian's python3-torch, as in the model images). Renders the 48-view orbit
of kernels/models/synthetic.py, trains on the 42 training views with the pipeline's
settings for --epoch (gaussian_splatting.config_for: Epoch 100 is 4200 iterations or
240 s on the CPU, whichever comes first) and prints the held-out PSNR over the 6 held-out views,
the wall time, the iterations and iterations/s. The CPU rasteriser always; where CUDA
and gsplat are available, also gsplat at --gpu-size (full resolution).
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from kernels.models import gaussian_splatting, gaussians, splat_cpu, splat_gpu, synthetic


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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.size.split("x"))
    print(f"torch {torch.__version__}, {args.threads} threads, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
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
