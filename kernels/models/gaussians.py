"""The 3D gaussian model, its optimiser and densification, and the training loop.

The parameters and schedule follow the 3D Gaussian splatting paper (Kerbl et al. 2023):
per-parameter Adam learning rates with an exponentially decaying position rate scaled by
the scene extent (colour and scale rates raised and the start made smaller and more opaque
for the few hundred iterations a CPU affords), loss 0.8 L1 + 0.2 D-SSIM, clone/split of
gaussians whose screen-space position gradient is large and pruning of transparent or
oversized ones. The renderer is
a parameter (``Rasterize``): the CPU rasteriser of ``splat_cpu`` or gsplat's on a GPU.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from kernels.models import ply
from kernels.models.splat_cpu import Camera, RenderOut, rasterize
from kernels.models.views import Views

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005,
         -1.0925484305920792, 0.5462742152960396)
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
         -0.4570457994644658, 1.445305721320277, -0.5900435899266435)
MIN_INIT_POINTS = 100

Rasterize = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                      Camera, torch.Tensor], RenderOut]


@dataclass
class TrainConfig:
    iterations: int = 3000
    time_budget: float = 240.0        # seconds of training at most
    sh_degree: int = 0                # highest SH degree trained (the file keeps degree 3)
    lr_means: float = 0.00016         # times the scene extent, decays to 1/100
    lr_means_final: float = 0.0000016
    lr_sh_dc: float = 0.02
    lr_opacity: float = 0.05
    lr_scales: float = 0.01
    lr_quats: float = 0.001
    lambda_dssim: float = 0.2
    densify_from: int = 50
    densify_until: float = 0.5        # fraction of the training (iterations or time)
    densify_every: int = 50
    grad_threshold: float = 0.0002    # of the screen-space position gradient, NDC units
    percent_dense: float = 0.01       # clone below, split above this fraction of the extent
    min_opacity: float = 0.005
    max_gaussians: int = 50_000
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    seed: int = 0
    init_opacity: float = 0.3
    init_scale: float = 0.5           # times the mean distance to the 3 nearest points


@dataclass
class TrainStats:
    iterations: int = 0
    seconds: float = 0.0
    gaussians: int = 0
    losses: list[float] = field(default_factory=list)


def eval_sh(degree: int, dc: torch.Tensor, rest: torch.Tensor,
            dirs: torch.Tensor) -> torch.Tensor:
    """RGB (N, 3) of real SH coefficients (dc (N, 3), rest (N, 15, 3)) seen along unit
    ``dirs`` (N, 3), offset by 0.5 and clamped at 0 like the reference."""
    out = SH_C0 * dc
    if degree > 0:
        x, y, z = (dirs[:, i:i + 1] for i in range(3))
        out = out - SH_C1 * y * rest[:, 0] + SH_C1 * z * rest[:, 1] - SH_C1 * x * rest[:, 2]
        if degree > 1:
            xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
            out = (out + SH_C2[0] * xy * rest[:, 3] + SH_C2[1] * yz * rest[:, 4]
                   + SH_C2[2] * (2 * zz - xx - yy) * rest[:, 5] + SH_C2[3] * xz * rest[:, 6]
                   + SH_C2[4] * (xx - yy) * rest[:, 7])
            if degree > 2:
                out = (out + SH_C3[0] * y * (3 * xx - yy) * rest[:, 8]
                       + SH_C3[1] * xy * z * rest[:, 9]
                       + SH_C3[2] * y * (4 * zz - xx - yy) * rest[:, 10]
                       + SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy) * rest[:, 11]
                       + SH_C3[4] * x * (4 * zz - xx - yy) * rest[:, 12]
                       + SH_C3[5] * z * (xx - yy) * rest[:, 13]
                       + SH_C3[6] * x * (xx - 3 * yy) * rest[:, 14])
    return (out + 0.5).clamp_min(0.0)


def _nn_scale(points: torch.Tensor) -> torch.Tensor:
    """Mean distance to the 3 nearest other points (the initial gaussian size)."""
    n = points.shape[0]
    rows = max(1, (1 << 22) // max(n, 1))
    out = []
    for i in range(0, n, rows):
        d = torch.cdist(points[i:i + rows], points)
        d[torch.arange(d.shape[0]), torch.arange(i, i + d.shape[0])] = float("inf")
        out.append(d.topk(min(3, max(n - 1, 1)), largest=False).values.mean(1))
    return torch.cat(out).clamp_min(1e-7)


class Gaussians:
    """The trainable parameters, kept as an Adam-optimised dict of leaf tensors."""

    NAMES = ("means", "sh_dc", "sh_rest", "opacity_logits", "log_scales", "quats")

    def __init__(self, means: torch.Tensor, colors: torch.Tensor, scale: torch.Tensor,
                 opacity: float = 0.1) -> None:
        n = means.shape[0]
        self.params: dict[str, torch.Tensor] = {
            "means": means.float(),
            "sh_dc": ((colors.float() - 0.5) / SH_C0),
            "sh_rest": torch.zeros(n, 15, 3),
            "opacity_logits": torch.full((n,), math.log(opacity / (1.0 - opacity))),
            "log_scales": torch.log(scale.float())[:, None].repeat(1, 3),
            "quats": torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(n, 1),
        }
        for p in self.params.values():
            p.requires_grad_(True)
        self.optimizer: torch.optim.Adam | None = None

    @classmethod
    def from_views(cls, views: Views, rng: np.random.Generator, opacity: float = 0.1,
                   scale: float = 1.0) -> Gaussians:
        """From the views' sparse points, or random points around the cameras' target
        when there are fewer than MIN_INIT_POINTS."""
        pts = np.asarray(views.points, dtype=np.float64).reshape(-1, 3)
        cols = np.asarray(views.colors, dtype=np.float64).reshape(-1, 3)
        if pts.shape[0] < MIN_INIT_POINTS:
            centres = views.camera_centers()
            mid = centres.mean(axis=0)
            radius = float(np.linalg.norm(centres - mid, axis=1).max()) or 1.0
            d = rng.normal(size=(5000, 3))
            d /= np.linalg.norm(d, axis=1, keepdims=True)
            pts = mid + d * radius * rng.uniform(0, 1, size=(5000, 1)) ** (1 / 3) * 1.5
            cols = rng.uniform(0, 1, size=(5000, 3))
        means = torch.tensor(pts, dtype=torch.float32)
        return cls(means, torch.tensor(cols, dtype=torch.float32), _nn_scale(means) * scale,
                   opacity)

    def __len__(self) -> int:
        return int(self.params["means"].shape[0])

    def to(self, device: str) -> None:
        """Move the parameters (before ``setup_optimizer``)."""
        self.params = {k: v.detach().to(device).requires_grad_(True)
                       for k, v in self.params.items()}

    def opacities(self) -> torch.Tensor:
        return torch.sigmoid(self.params["opacity_logits"])

    def colors(self, cam_center: torch.Tensor, degree: int) -> torch.Tensor:
        p = self.params
        if degree == 0:
            return (SH_C0 * p["sh_dc"] + 0.5).clamp_min(0.0)
        dirs = p["means"] - cam_center
        dirs = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-9)
        return eval_sh(degree, p["sh_dc"], p["sh_rest"], dirs)

    def render(self, cam: Camera, background: torch.Tensor, degree: int,
               rasterize_fn: Rasterize = rasterize) -> RenderOut:
        w2c = cam.world_to_cam
        center = -w2c[:3, :3].T @ w2c[:3, 3]
        p = self.params
        return rasterize_fn(p["means"], p["quats"], p["log_scales"], self.opacities(),
                            self.colors(center.to(p["means"]), degree), cam, background)

    # --- optimisation -------------------------------------------------------------------

    def setup_optimizer(self, cfg: TrainConfig, extent: float) -> None:
        lrs = {"means": cfg.lr_means * extent, "sh_dc": cfg.lr_sh_dc,
               "sh_rest": cfg.lr_sh_dc / 20.0, "opacity_logits": cfg.lr_opacity,
               "log_scales": cfg.lr_scales, "quats": cfg.lr_quats}
        self.optimizer = torch.optim.Adam(
            [{"params": [self.params[n]], "lr": lrs[n], "name": n} for n in self.NAMES],
            lr=0.0, eps=1e-15)

    def set_means_lr(self, lr: float) -> None:
        assert self.optimizer is not None
        for group in self.optimizer.param_groups:
            if group["name"] == "means":
                group["lr"] = lr

    def _swap(self, make: Callable[[str, torch.Tensor], torch.Tensor],
              make_state: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Replace every parameter by ``make(name, old)`` and its Adam moments by
        ``make_state(old_moment)`` (a prune keeps rows, a densify appends rows)."""
        assert self.optimizer is not None
        for group in self.optimizer.param_groups:
            old = group["params"][0]
            new = make(group["name"], old.detach()).requires_grad_(True)
            state = self.optimizer.state.pop(old, None)
            if state:
                state["exp_avg"] = make_state(state["exp_avg"])
                state["exp_avg_sq"] = make_state(state["exp_avg_sq"])
                self.optimizer.state[new] = state
            group["params"][0] = new
            self.params[group["name"]] = new

    def keep(self, mask: torch.Tensor) -> None:
        self._swap(lambda _, old: old[mask].clone(), lambda s: s[mask].clone())

    def append(self, extra: dict[str, torch.Tensor]) -> None:
        def make(name: str, old: torch.Tensor) -> torch.Tensor:
            return torch.cat([old, extra[name].to(old)])

        def make_state(s: torch.Tensor) -> torch.Tensor:
            n = extra["means"].shape[0]
            return torch.cat([s, torch.zeros((n, *s.shape[1:]), dtype=s.dtype)])
        self._swap(make, make_state)

    def densify_and_prune(self, grad: torch.Tensor, cfg: TrainConfig, extent: float,
                          rng: torch.Generator) -> None:
        """Clone small and split large gaussians whose mean screen-space gradient ``grad``
        reaches the threshold; then drop the nearly transparent and the oversized."""
        with torch.no_grad():
            p = {k: v.detach() for k, v in self.params.items()}
            dev = p["means"].device
            grad = grad.to(dev)
            big = torch.exp(p["log_scales"]).max(dim=1).values > cfg.percent_dense * extent
            hot = grad >= cfg.grad_threshold
            room = cfg.max_gaussians - len(self)
            clone = hot & ~big
            split = hot & big
            if room <= 0:
                clone &= False
                split &= False
            elif int(clone.sum()) + 2 * int(split.sum()) > room:
                order = torch.argsort(grad, descending=True)
                budget = torch.zeros_like(hot)
                cost = torch.where(big, 2, 1)[order] * hot[order]
                budget[order[torch.cumsum(cost, 0) <= room]] = True
                clone &= budget
                split &= budget
            extra = {k: v[clone] for k, v in p.items()}
            # a split gaussian becomes two, drawn from it, each 1/1.6 its size
            ns = int(split.sum())
            if ns:
                scales = torch.exp(p["log_scales"][split]).repeat(2, 1)
                from kernels.models.splat_cpu import quat_to_rotmat
                rot = quat_to_rotmat(p["quats"][split]).repeat(2, 1, 1)
                offs = torch.randn(scales.shape, generator=rng).to(dev) * scales
                pieces = {k: v[split].repeat(2, *([1] * (v.dim() - 1))) for k, v in p.items()}
                pieces["means"] = pieces["means"] + (rot @ offs[..., None])[..., 0]
                pieces["log_scales"] = torch.log(scales / 1.6)
                extra = {k: torch.cat([extra[k], pieces[k]]) for k in p}
            self.append(extra)
            n_after = len(self)
            drop = torch.zeros(n_after, dtype=torch.bool, device=dev)
            drop[torch.nonzero(split).squeeze(1)] = True  # the split originals
            drop |= self.opacities().detach() < cfg.min_opacity
            drop |= torch.exp(self.params["log_scales"].detach()).max(dim=1).values \
                > 0.1 * extent
            if bool(drop.all()):
                return
            self.keep(~drop)

    def reset_opacity(self, value: float = 0.01) -> None:
        logit = math.log(value / (1 - value))
        self._swap(lambda name, old: old.clamp_max(logit) if name == "opacity_logits"
                   else old, lambda s: s)

    def to_cloud(self) -> ply.GaussianCloud:
        p = {k: v.detach().cpu().numpy() for k, v in self.params.items()}
        return ply.GaussianCloud(means=p["means"], sh_dc=p["sh_dc"], sh_rest=p["sh_rest"],
                                 opacity_logits=p["opacity_logits"],
                                 log_scales=p["log_scales"], quats=p["quats"])


# --- losses and metrics -----------------------------------------------------------------

def _window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    g = torch.exp(-((torch.arange(size) - size // 2) ** 2).float() / (2 * sigma * sigma))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(3, 1, size, size).contiguous()


_WINDOW = _window()


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean SSIM of two (H, W, 3) images (gaussian window 11, sigma 1.5)."""
    x = a.permute(2, 0, 1)[None]
    y = b.permute(2, 0, 1)[None]
    w = _WINDOW.to(a)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(t, w, padding=5, groups=3)
    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.mean()


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.clamp(0, 1) - b) ** 2).mean())
    return 10.0 * math.log10(1.0 / max(mse, 1e-12))


# --- training -----------------------------------------------------------------------------

def scene_extent(views: Views) -> float:
    """1.1 x the largest camera distance from the cameras' mean (the reference's rule)."""
    centres = views.camera_centers()
    return 1.1 * float(np.linalg.norm(centres - centres.mean(axis=0), axis=1).max() or 1.0)


def cameras(views: Views) -> list[Camera]:
    h, w = views.size
    return [Camera(torch.as_tensor(views.world_to_cam[i], dtype=torch.float32),
                   torch.as_tensor(views.intrinsics[i], dtype=torch.float32), w, h)
            for i in range(len(views))]


def train(views: Views, cfg: TrainConfig, rasterize_fn: Rasterize = rasterize,
          progress: Callable[[float, str], None] | None = None,
          log: Callable[[str], None] | None = None,
          device: str = "cpu") -> tuple[Gaussians, TrainStats]:
    """Fit gaussians to the training views of ``views.split()``; stops after
    ``cfg.iterations`` or ``cfg.time_budget`` seconds, whichever is first."""
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    train_ids, _ = views.split()
    cams = cameras(views)
    images = torch.as_tensor(views.images, dtype=torch.float32).to(device)
    model = Gaussians.from_views(views, rng, cfg.init_opacity, cfg.init_scale)
    model.to(device)
    extent = scene_extent(views)
    model.setup_optimizer(cfg, extent)
    bg = torch.tensor(cfg.background, dtype=torch.float32, device=device)
    grad_sum = torch.zeros(len(model))
    grad_n = torch.zeros(len(model))
    stats = TrainStats()
    start = time.monotonic()
    order: list[int] = []
    last_report, last_time = -100.0, 0.0
    degree_step = max(1, cfg.iterations // (cfg.sh_degree + 1))
    for it in range(1, cfg.iterations + 1):
        elapsed = time.monotonic() - start
        if elapsed > cfg.time_budget:
            break
        # the schedules follow whichever limit comes first: iterations or time
        frac = min(1.0, max((it - 1) / max(cfg.iterations - 1, 1), elapsed / cfg.time_budget))
        densifying = frac < cfg.densify_until
        model.set_means_lr(extent * math.exp(
            (1 - frac) * math.log(cfg.lr_means) + frac * math.log(cfg.lr_means_final)))
        if not order:
            order = [int(i) for i in rng.permutation(train_ids)]
        view = order.pop()
        cam = cams[view]
        degree = min(cfg.sh_degree, (it - 1) // degree_step)
        out = model.render(cam, bg, degree, rasterize_fn)
        target = images[view].to(out.image)
        l1 = (out.image - target).abs().mean()
        loss = (1 - cfg.lambda_dssim) * l1 + cfg.lambda_dssim * (1 - ssim(out.image, target))
        loss.backward()
        stats.losses.append(float(loss))
        with torch.no_grad():
            if densifying and out.means2d.grad is not None:
                g2 = out.means2d.grad.detach().cpu()
                g2 = g2[0] if g2.dim() == 3 else g2  # gsplat's is (1, N, 2)
                g2 = g2 * torch.tensor([cam.width / 2.0, cam.height / 2.0])  # pixel -> NDC
                vis = out.visible.detach().cpu()
                grad_sum[vis] += g2[vis].norm(dim=-1)
                grad_n[vis] += 1
        assert model.optimizer is not None
        model.optimizer.step()
        model.optimizer.zero_grad(set_to_none=True)
        if densifying and it >= cfg.densify_from and it % cfg.densify_every == 0:
            model.densify_and_prune(grad_sum / grad_n.clamp_min(1), cfg, extent, gen)
            grad_sum = torch.zeros(len(model))
            grad_n = torch.zeros(len(model))
        stats.iterations = it
        pct = 100.0 * max(it / cfg.iterations, (time.monotonic() - start) / cfg.time_budget)
        now = time.monotonic()
        if progress is not None and pct - last_report >= 2.0 and now - last_time >= 1.0:
            last_report, last_time = pct, now
            progress(min(pct, 100.0), f"iteration {it}, {len(model)} gaussians, "
                                      f"loss {float(loss):.4f}")
        if log is not None and it % 100 == 0:
            log(f"iteration {it}: loss {float(loss):.4f}, {len(model)} gaussians, "
                f"{time.monotonic() - start:.1f} s")
    stats.seconds = time.monotonic() - start
    stats.gaussians = len(model)
    return model, stats


def evaluate(model: Gaussians, views: Views, ids: list[int], cfg: TrainConfig,
             rasterize_fn: Rasterize = rasterize) -> list[float]:
    """PSNR of each view in ``ids`` rendered by the model."""
    cams = cameras(views)
    bg = torch.tensor(cfg.background, dtype=torch.float32,
                      device=model.params["means"].device)
    out: list[float] = []
    with torch.no_grad():
        for i in ids:
            img = model.render(cams[i], bg, cfg.sh_degree, rasterize_fn).image
            out.append(psnr(img.cpu(), torch.as_tensor(views.images[i], dtype=torch.float32)))
    return out


def config_summary(cfg: TrainConfig) -> dict[str, Any]:
    return {"iterations": cfg.iterations, "time_budget": cfg.time_budget,
            "sh_degree": cfg.sh_degree}
