"""Gaussian-splatting training on the synthetic scene with known poses.

    /usr/bin/python3 -m bench.splat_cpu [--seconds 240] [--threads N] [--size 160x120]

Needs PyTorch (Debian's python3-torch, as in the model images). Renders the 48-view orbit
of kernels/models/synthetic.py, trains on the 42 training views with the pipeline's
defaults (kernels/models/gaussians.TrainConfig; the iteration count is capped by the
time budget, as Epoch 100 is) and prints the held-out PSNR over the 6 held-out views,
the wall time, the iterations and iterations/s. The CPU rasteriser always; where CUDA
and gsplat are available, also gsplat at --gpu-size (full resolution).
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from kernels.models import gaussians, splat_cpu, splat_gpu, synthetic


def bench(label: str, width: int, height: int, seconds: float, iterations: int,
          backend: splat_gpu.Backend) -> None:
    t0 = time.perf_counter()
    views = synthetic.render(width, height, 48)
    render_s = time.perf_counter() - t0
    cfg = gaussians.TrainConfig(iterations=iterations, time_budget=seconds)
    if backend.name == "gsplat":
        cfg.sh_degree = 3
    t0 = time.perf_counter()
    model, stats = gaussians.train(views, cfg, backend.rasterize, device=backend.device)
    _, held = views.split()
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
    parser.add_argument("--seconds", type=float, default=240.0, help="training time budget")
    parser.add_argument("--iterations", type=int, default=4200,
                        help="iteration cap (Epoch 100 x 42 training views)")
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
    bench("CPU rasteriser", width, height, args.seconds, args.iterations, cpu)
    gpu = splat_gpu.select()
    if gpu.name == "gsplat":
        gw, gh = (int(v) for v in args.gpu_size.split("x"))
        bench(f"gsplat ({gpu.reason})", gw, gh, args.seconds, args.iterations, gpu)
    else:
        print(f"gsplat: not run ({gpu.reason})")


if __name__ == "__main__":
    main()
