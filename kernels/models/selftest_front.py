"""Checks of the generation front end that need ffmpeg, pycolmap and numpy: run
``python3 -m kernels.models.selftest_front [check ...]`` (inside a model image, or with
Debian's python3); exits non-zero when a check fails. The pytest wrapper is
tests/integration/kernels/test_models_front.py.

    video    frames: probe and extract a synthetic video; a text file is "not a video"
    sfm      SfM on the synthetic orbit registers >= 90% of the frames, and the camera
             centres match the known ones up to a similarity (Umeyama residual small)
    run      ``python3 -m kernels.models.run`` on a job directory with a fake model:
             an OK result, its outputs, monotone progress, the log
    run_refusals  NG results: not a video, a bad epoch, a symlinked request.json or
             input, a video SfM cannot pose (a fixed camera)
    run_interrupt  SIGTERM during SfM: NG "interrupted" within seconds, no scratch left
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from kernels.models import frames, jobfiles, sfm, synthetic
from kernels.models.run import ModelSpec
from kernels.models.views import Views

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
    turned = tmp / "turned.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(synthetic_video(tmp)), "-c", "copy",
                    "-metadata:s:v", "rotate=90", str(turned)], check=True)
    fd = os.open(turned, os.O_RDONLY)
    try:
        info = frames.probe(fd, print)
        got = frames.extract(fd, info, 3, info.working_size(160), print)
        assert (info.width, info.height) == (480, 640) and got.shape == (3, 160, 120, 3), info
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
    tilt = float(np.degrees(np.arccos(np.clip((rot.T @ [0.0, 0.0, 1.0])[2], -1.0, 1.0))))
    print(f"sfm: the scene's up is {tilt:.2f} degrees off the normalised +z")
    assert len(views) >= 0.9 * len(images), f"{len(views)} of {len(images)} registered"
    assert tilt < 5.0, tilt
    assert error < MAX_ALIGN_ERROR, error
    radius = np.linalg.norm(views.camera_centers(), axis=1)
    assert 1.0 < np.median(radius) < 4.0, radius
    assert views.size == (120, 160) and views.intrinsics[0, 0, 2] < 90


FAKE = ModelSpec("kernels.models.selftest_front", frames=24, cpu_long_side=96,
                 gpu_long_side=96, function="fake_model")
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
LAUNCH = ("import sys; from kernels.models import run, selftest_front as t; "
          "sys.exit(run.run_job(sys.argv[1], {'fake': t.FAKE}))")


def fake_model(views: Views, epoch: int, out_dir: Path, report: Callable[..., None],
               log: Callable[[str], None]) -> dict[str, object]:
    """A model that trains nothing: it reports, writes its two files and returns."""
    from PIL import Image
    for step in range(epoch):
        report("train", 100.0 * (step + 1) / epoch, f"step {step + 1} of {epoch}")
    log(f"fake model: {len(views)} views of {views.size}, {len(views.points)} points")
    subprocess.run([sys.executable, "-c", "import sys; open(sys.argv[1], 'w').write('1')",
                    str(out_dir / "points.txt")], check=True)   # out_dir works in a child
    Image.fromarray((views.images[0] * 255).astype(np.uint8)).save(out_dir / "thumbnail.png")
    report("export", 100, "exported")
    return {"outputs": {"1": "points.txt"}, "thumbnail": "thumbnail.png",
            "metrics": {"psnr": 30.0}}


def make_job(tmp: Path, name: str, model: str, video: Path | None, epoch: int = 2) -> Path:
    request = jobfiles.Request(request_id=name, model=model, item_name="chair", epoch=epoch,
                               resize=False, input="input/clip.mp4")
    return Path(jobfiles.make_job_dir(tmp / "jobs", request,
                                      video.read_bytes() if video is not None else b""))


def launch(job: Path, fake: bool, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    args = ["-c", LAUNCH] if fake else ["-m", "kernels.models.run"]
    return subprocess.Popen([sys.executable, *args, str(job)], cwd=PACKAGE_ROOT,
                            env={**os.environ, "KRAKEN_ATLAS_THREADS": "2", **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finished(job: Path, proc: subprocess.Popen[str], timeout: float) -> tuple[int, str,
                                                                               jobfiles.Result]:
    out, _ = proc.communicate(timeout=timeout)
    result = jobfiles.parse_result((job / "result.json").read_text())
    assert not (job / "result.json.tmp").exists()
    return proc.returncode, out, result


@check
def check_run(tmp: Path) -> None:
    job = make_job(tmp, "ok", "fake", synthetic_video(tmp), epoch=3)
    code, out, result = finished(job, launch(job, fake=True), 600)
    assert code == 0 and result.ok, (code, result, out[-2000:])
    assert result.outputs == {"1": "points.txt"} and result.thumbnail == "thumbnail.png"
    assert (job / "outputs" / "thumbnail.png").stat().st_size > 0
    assert result.metrics["psnr"] == 30.0 and result.metrics["frames"] >= 22, result
    lines = [jobfiles.parse_progress_line(line)
             for line in (job / "progress.jsonl").read_text().splitlines()]
    percents = [p.percent for p in lines]
    assert percents == sorted(percents) and percents[-1] == 100, percents
    assert {"frames", "sfm", "train", "export"} <= {p.stage for p in lines}, lines
    assert out.count(jobfiles.PROGRESS_PREFIX) == len(lines), out[-2000:]
    log = (job / "log.txt").read_text()
    assert "sfm: registered" in log and "fake model" in log, log[-2000:]
    print(f"run: OK in {result.metrics['seconds']} s, {len(lines)} progress lines")


@check
def check_run_refusals(tmp: Path) -> None:
    text = tmp / "notes.txt"
    text.write_text("not a video\n")
    job = make_job(tmp, "text", "gaussian-splatting", text)
    code, _, result = finished(job, launch(job, fake=False), 60)
    assert code == 1 and result.error and "not a video" in result.error, result
    job = make_job(tmp, "epoch", "gaussian-splatting", text, epoch=0)
    code, _, result = finished(job, launch(job, fake=False), 60)
    assert code == 1 and result.error and "epoch" in result.error, result
    job = make_job(tmp, "link", "gaussian-splatting", text)
    outside = tmp / "outside.json"
    (job / "request.json").rename(outside)
    (job / "request.json").symlink_to(outside)
    code, _, result = finished(job, launch(job, fake=False), 60)
    assert code == 1 and result.error and "request.json" in result.error, result
    still = tmp / "still.mp4"       # a fixed camera: nothing for SfM to triangulate
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc=size=320x240:rate=25", "-t", "2", "-pix_fmt", "yuv420p",
                    str(still)], check=True)
    job = make_job(tmp, "still", "fake", still)
    code, _, result = finished(job, launch(job, fake=True), 120)
    assert code == 1 and result.error and result.error.startswith(
        "structure from motion registered 0 of 24 frames"), result
    job = make_job(tmp, "videolink", "gaussian-splatting", None)
    (job / "input" / "clip.mp4").unlink()
    (job / "input" / "clip.mp4").symlink_to(synthetic_video(tmp))
    code, _, result = finished(job, launch(job, fake=False), 60)
    assert code == 1 and result.error and "cannot open the input" in result.error, result


@check
def check_run_interrupt(tmp: Path) -> None:
    job = make_job(tmp, "stop", "fake", synthetic_video(tmp))
    scratch = tmp / "scratch"
    scratch.mkdir()
    proc = launch(job, fake=True, env={"TMPDIR": str(scratch)})
    deadline = time.monotonic() + 120
    while '"stage":"sfm"' not in _text(job / "progress.jsonl"):
        assert time.monotonic() < deadline and proc.poll() is None, "no sfm progress"
        time.sleep(0.2)
    time.sleep(1.0)
    tick = time.monotonic()
    proc.terminate()
    code, _, result = finished(job, proc, 30)
    assert code == 1 and result.error == "interrupted", result
    assert time.monotonic() - tick < 5, "slow to stop"
    assert not list(scratch.iterdir()), list(scratch.iterdir())


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


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
