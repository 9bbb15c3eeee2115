"""Self-checks of the gaussian-splatting model, runnable where torch is installed:

    python3 -m kernels.models.selftest     (exit status 0 when every check passes)

The unit tests call the same checks; the integration test runs this module inside the
``kraken/gaussian-splatting`` image (the CI venv has no torch).
"""
from __future__ import annotations

import math
import pathlib
import sys
import tempfile
import traceback
from collections.abc import Callable

import numpy as np
import torch

from kernels.models import gaussians, ply, splat_cpu, synthetic
from kernels.models.splat_cpu import ALPHA_MAX, ALPHA_MIN, T_MIN, Camera, project


def random_scene(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """``n`` gaussians in front of ``tiny_camera`` (leaf tensors that require grad)."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, 4, generator=g)
    return {
        "means": (torch.rand(n, 3, generator=g) - 0.5) * torch.tensor([2.0, 1.6, 1.0])
        + torch.tensor([0.0, 0.0, 3.0]),
        "quats": q / q.norm(dim=1, keepdim=True),
        "log_scales": torch.log(0.05 + 0.15 * torch.rand(n, 3, generator=g)),
        "opacities": 0.2 + 0.7 * torch.rand(n, generator=g),
        "colors": torch.rand(n, 3, generator=g),
    }


def tiny_camera(width: int = 37, height: int = 29) -> Camera:
    """A camera at the origin looking down +z (sizes not multiples of the tile)."""
    f = 0.8 * width
    k = torch.tensor([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])
    return Camera(torch.eye(4), k, width, height)


def dense_render(means: torch.Tensor, quats: torch.Tensor, log_scales: torch.Tensor,
                 opacities: torch.Tensor, colors: torch.Tensor, cam: Camera,
                 background: torch.Tensor) -> torch.Tensor:
    """Reference renderer: every pixel against every gaussian, sorted by depth; the same
    cut-offs (alpha >= 1/255, clamp at 0.99, termination below T_MIN), no tiles."""
    proj = project(means, log_scales, quats, cam, opacities)
    ids = torch.nonzero(proj.visible).squeeze(1)
    ids = ids[torch.argsort(proj.depths[ids].detach())]
    ys, xs = torch.meshgrid(torch.arange(cam.height), torch.arange(cam.width), indexing="ij")
    pix = torch.stack([xs, ys], -1).reshape(-1, 2).to(means) + 0.5
    d = pix[:, None, :] - proj.means2d[ids][None]                  # (P, N, 2)
    con = proj.conics[ids]
    power = -0.5 * (con[:, 0] * d[..., 0] ** 2 + con[:, 2] * d[..., 1] ** 2) \
        - con[:, 1] * d[..., 0] * d[..., 1]
    alpha = (opacities[ids] * torch.exp(power.clamp_max(0.0))).clamp_max(ALPHA_MAX)
    keep = (power <= 0) & (alpha >= ALPHA_MIN)
    alpha = torch.where(keep, alpha, torch.zeros_like(alpha))
    with torch.no_grad():
        t_all = torch.cumprod(1 - alpha, dim=1)
        live = torch.cat([torch.ones_like(t_all[:, :1]), t_all[:, :-1]], 1) > T_MIN
    alpha = torch.where(live, alpha, torch.zeros_like(alpha))
    trans = torch.cumprod(1 - alpha, dim=1)
    before = torch.cat([torch.ones_like(trans[:, :1]), trans[:, :-1]], 1)
    img = (alpha * before) @ colors[ids] + trans[:, -1:] * background
    return img.reshape(cam.height, cam.width, 3)


def check_gradients_match_dense() -> None:
    cam = tiny_camera()
    bg = torch.tensor([0.2, 0.3, 0.4])
    target = torch.rand(cam.height, cam.width, 3, generator=torch.Generator().manual_seed(1))
    results = []
    for fn in (lambda *a: splat_cpu.rasterize(*a).image, dense_render):
        scene = {k: v.clone().requires_grad_(True) for k, v in random_scene(60).items()}
        img = fn(scene["means"], scene["quats"], scene["log_scales"], scene["opacities"],
                 scene["colors"], cam, bg)
        ((img - target) ** 2).sum().backward()
        results.append((img.detach(), {k: v.grad for k, v in scene.items()}))
    (img_t, grads_t), (img_d, grads_d) = results
    err = float((img_t - img_d).abs().max())
    assert err < 1e-4, f"tile renderer differs from the dense one by {err}"
    assert float(img_d.std()) > 0.05, "the test scene is too flat to mean anything"
    for name in grads_t:
        gt, gd = grads_t[name], grads_d[name]
        assert gt is not None and gd is not None, name
        scale = float(gd.abs().max())
        diff = float((gt - gd).abs().max())
        assert scale > 0 and diff <= 1e-3 * scale + 1e-5, \
            f"gradient of {name} differs: {diff} (scale {scale})"


def check_binning_keeps_covering_gaussians() -> None:
    """Every (pixel, gaussian) pair with alpha >= 1/255 has the gaussian in the pixel's
    tile list, for gaussians of every size including ones straddling the border."""
    cam = tiny_camera(70, 45)
    scene = random_scene(300, seed=3)
    scene["log_scales"] = torch.log(torch.rand(300, 3, generator=torch.Generator()
                                               .manual_seed(4)) * 0.6 + 0.005)
    with torch.no_grad():
        proj = project(scene["means"], scene["log_scales"], scene["quats"], cam,
                       scene["opacities"])
        lists, counts = splat_cpu.bin_tiles(proj.means2d, proj.radii, proj.depths,
                                            proj.visible, cam.width, cam.height)
        tiles_x = math.ceil(cam.width / splat_cpu.TILE)
        members: list[set[int]] = []
        start = 0
        for c in counts.tolist():
            members.append(set(lists[start:start + c].tolist()))
            start += c
        ys, xs = torch.meshgrid(torch.arange(cam.height), torch.arange(cam.width),
                                indexing="ij")
        pix = torch.stack([xs, ys], -1).reshape(-1, 2).float() + 0.5
        d = pix[:, None, :] - proj.means2d[None]
        con = proj.conics
        power = -0.5 * (con[:, 0] * d[..., 0] ** 2 + con[:, 2] * d[..., 1] ** 2) \
            - con[:, 1] * d[..., 0] * d[..., 1]
        alpha = scene["opacities"] * torch.exp(power.clamp_max(0.0))
        covers = (alpha >= ALPHA_MIN) & (power <= 0) & (proj.depths > splat_cpu.NEAR)
        p_idx, g_idx = torch.nonzero(covers, as_tuple=True)
        assert p_idx.numel() > 1000, "too few covering pairs to test"
        for p, g in zip(p_idx.tolist(), g_idx.tolist(), strict=True):
            x, y = p % cam.width, p // cam.width
            tile = (y // splat_cpu.TILE) * tiles_x + x // splat_cpu.TILE
            assert g in members[tile], f"gaussian {g} covers pixel ({x}, {y}) " \
                                       f"but is not in tile {tile}"


def check_ply_round_trip() -> None:
    rng = np.random.default_rng(0)
    n = 17
    cloud = ply.GaussianCloud(
        means=rng.normal(size=(n, 3)), sh_dc=rng.normal(size=(n, 3)),
        sh_rest=rng.normal(size=(n, 15, 3)), opacity_logits=rng.normal(size=n),
        log_scales=rng.normal(size=(n, 3)), quats=rng.normal(size=(n, 4)))
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/point_cloud.ply"
        ply.write(path, cloud)
        raw = pathlib.Path(path).read_bytes()
        count, names, body = ply.read_header(raw)
        assert count == n and len(names) == 62 and names == ply.PROPERTIES
        assert names[:9] == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
        assert names[-8:] == ["opacity", "scale_0", "scale_1", "scale_2",
                              "rot_0", "rot_1", "rot_2", "rot_3"]
        # f_rest is channel-major: f_rest_1 is red's second coefficient
        row = np.frombuffer(raw, "<f4", count=62, offset=body)
        assert abs(row[10] - cloud.sh_rest[0, 1, 0]) < 1e-6
        assert abs(row[9 + 15] - cloud.sh_rest[0, 0, 1]) < 1e-6
        back = ply.read(path)
    for field in ("means", "sh_dc", "sh_rest", "opacity_logits", "log_scales", "quats"):
        assert np.allclose(getattr(back, field), getattr(cloud, field), atol=1e-6), field


def check_short_fit_raises_psnr() -> None:
    views = synthetic.render(64, 48, 16, n_points=1500, supersample=1)
    cfg = gaussians.TrainConfig(iterations=50, time_budget=120.0, densify_from=20,
                                densify_every=20)
    train_ids, _ = views.split()
    model0 = gaussians.Gaussians.from_views(views, np.random.default_rng(cfg.seed))
    before = np.mean(gaussians.evaluate(model0, views, train_ids[:4], cfg))
    model, stats = gaussians.train(views, cfg)
    after = np.mean(gaussians.evaluate(model, views, train_ids[:4], cfg))
    assert stats.iterations == 50
    assert after > before + 1.0, f"PSNR {before:.2f} -> {after:.2f} dB after 50 iterations"


CHECKS: list[Callable[[], None]] = [
    check_gradients_match_dense,
    check_binning_keeps_covering_gaussians,
    check_ply_round_trip,
    check_short_fit_raises_psnr,
]


def main() -> int:
    torch.manual_seed(0)
    failed = 0
    for check in CHECKS:
        try:
            check()
        except Exception:  # noqa: BLE001 - report every failing check, then fail
            failed += 1
            print(f"FAIL {check.__name__}", flush=True)
            traceback.print_exc()
        else:
            print(f"ok   {check.__name__}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
