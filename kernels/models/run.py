"""``python3 -m kernels.models.run <job dir>``: run one Atlas generation job.

Reads request.json, then frames (0-5 %) → structure from motion (5-25 %) → the model's
pipeline (25-100 %), reporting progress.jsonl and log.txt as it goes, and writes
result.json LAST, atomically: OK (exit 0) or NG with a one-line error (exit 1). The job
runs on a worker thread so that SIGTERM/SIGINT is answered at once, even while the main
work sits inside ffmpeg, pycolmap or torch: an NG "interrupted" result, then exit.

A model is a module with ``run(views, epoch, out_dir, report, log) -> {"outputs":
{code: file name}, "thumbnail": file name | None, "metrics": {name: number}}``, where
``report(stage, percent 0..100 of the model's own run, message)`` and ``log(text)``;
it writes its files in ``out_dir`` (the job's outputs/). Every name in the job
directory is opened without following symlinks (the directory is in the owner's storage).
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import math
import os
import shutil
import signal
import stat
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from kernels.models import jobfiles
from kernels.models.progress import Reporter


@dataclass(frozen=True)
class ModelSpec:
    module: str
    frames: int                 # frames taken from the video for SfM and training
    cpu_long_side: int          # working image size (longest side) without a GPU
    gpu_long_side: int          # ... with one
    function: str = "run"

    def long_side(self, gpu: bool) -> int:
        return self.gpu_long_side if gpu else self.cpu_long_side


MODELS: dict[str, ModelSpec] = {
    "gaussian-splatting": ModelSpec("kernels.models.gaussian_splatting", 48, 160, 1280),
    "nerf2mesh": ModelSpec("kernels.models.nerf2mesh", 40, 160, 160),
}


class Interrupted(Exception):
    pass


class JobError(Exception):
    """The job cannot go on; the message is the result's one-line error."""


def threads_granted() -> int:
    try:
        granted = int(os.environ.get("KRAKEN_ATLAS_THREADS", ""))
    except ValueError:
        granted = len(os.sched_getaffinity(0))
    return max(1, granted)


def limit_threads(threads: int) -> None:
    """Before numpy/torch load: their pools use the cores granted, not the host's."""
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)


def has_gpu() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch
    return bool(torch.cuda.is_available())


def load_model(spec: ModelSpec, threads: int) -> Callable[..., dict[str, Any]]:
    module = importlib.import_module(spec.module)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    return getattr(module, spec.function)  # type: ignore[no-any-return]


def open_input(dir_fd: int, request: jobfiles.Request) -> int:
    """The uploaded video, a regular file, opened without following symlinks."""
    try:
        input_fd = jobfiles.open_dir(jobfiles.INPUT_DIR, dir_fd)
        try:
            fd = os.open(request.input_name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
                         | os.O_NONBLOCK, dir_fd=input_fd)
        finally:
            os.close(input_fd)
    except OSError as exc:
        raise JobError(f"cannot open the input video {request.input}: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise JobError(f"the input {request.input} is not a regular file")
    return fd


def fresh_outputs(dir_fd: int) -> int:
    """outputs/ as a real, emptied directory (a rerun's files and any planted link go)."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(jobfiles.OUTPUTS, 0o755, dir_fd=dir_fd)
    try:
        fd = jobfiles.open_dir(jobfiles.OUTPUTS, dir_fd)
    except OSError:
        raise JobError("outputs/ in the job directory is not a directory") from None
    for entry in os.listdir(fd):
        if not stat.S_ISDIR(os.stat(entry, dir_fd=fd, follow_symlinks=False).st_mode):
            os.unlink(entry, dir_fd=fd)
    return fd


def checked_outputs(out_fd: int, produced: dict[str, Any]) -> jobfiles.Result:
    """The model's answer as a Result, after checking that each named file is there."""
    outputs = {str(code): jobfiles.safe_name(name)
               for code, name in (produced.get("outputs") or {}).items()}
    thumbnail = produced.get("thumbnail")
    for name in [*outputs.values(), *([thumbnail] if thumbnail else [])]:
        try:
            mode = os.stat(jobfiles.safe_name(name), dir_fd=out_fd, follow_symlinks=False)
        except FileNotFoundError:
            raise JobError(f"the model did not write {name}") from None
        if not stat.S_ISREG(mode.st_mode):
            raise JobError(f"the model's output {name} is not a regular file")
    # result.json's metrics are finite numbers; a model's labels (the renderer's name) and
    # unknowns (no PSNR without held-out views) stay in its log
    metrics = {str(k): float(v) for k, v in (produced.get("metrics") or {}).items()
               if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}
    return jobfiles.Result(status="OK", outputs=outputs, thumbnail=thumbnail or None,
                           metrics=metrics)


class Job:
    def __init__(self, dir_fd: int, reporter: Reporter, threads: int, scratch: Path,
                 models: dict[str, ModelSpec]) -> None:
        self.dir_fd, self.reporter, self.threads = dir_fd, reporter, threads
        self.scratch, self.models = scratch, models
        self.started = time.monotonic()
        self._result_lock = threading.Lock()
        self.result: jobfiles.Result | None = None

    def finish(self, result: jobfiles.Result) -> None:
        """Write result.json once: the first of the worker and an interrupt wins."""
        with self._result_lock:
            if self.result is not None:
                return
            if result.ok:
                self.reporter.progress("export", 100, "done")
            self.reporter.log(f"result: {result.status} {result.error or ''}".rstrip())
            jobfiles.write_atomic(self.dir_fd, jobfiles.RESULT, result.to_json())
            self.result = result

    def run(self) -> None:
        try:
            result = self.pipeline()
        except (JobError, jobfiles.JobFileError) as exc:
            result = jobfiles.Result.failed(str(exc))
        except BaseException as exc:     # SystemExit from a model too: always a result
            self.reporter.log(traceback.format_exc())
            result = jobfiles.Result.failed(self.describe(exc))
        self.finish(result)

    @staticmethod
    def describe(exc: BaseException) -> str:
        from kernels.models.frames import VideoError
        from kernels.models.sfm import SfmError
        if isinstance(exc, VideoError | SfmError):
            return str(exc)
        if isinstance(exc, MemoryError):
            return "out of memory"
        return f"{type(exc).__name__}: {exc}"

    def pipeline(self) -> jobfiles.Result:
        request = jobfiles.parse_request(jobfiles.read_fixed(self.dir_fd, jobfiles.REQUEST))
        spec = self.models.get(request.model)
        if spec is None:
            raise JobError(f"unknown model {request.model!r}")
        log = self.reporter.log
        log(f"job {request.request_id}: model {request.model}, epoch {request.epoch}, "
            f"resize {request.resize}, {self.threads} threads")
        views = self.posed_views(request, spec)
        out_fd = fresh_outputs(self.dir_fd)
        try:
            model = load_model(spec, self.threads)
            tick = time.monotonic()
            # the checked directory itself, also for the model's subprocesses
            out_dir = Path(f"/proc/{os.getpid()}/fd/{out_fd}")
            band = self.reporter.stage("model", "train")
            produced = model(views, request.epoch, out_dir,
                             lambda stage, percent, message: band(percent, message, stage),
                             log)
            log(f"model: {time.monotonic() - tick:.1f} s")
            result = checked_outputs(out_fd, produced)
        finally:
            os.close(out_fd)
        metrics = {**result.metrics, "frames": float(len(views)),
                   "seconds": round(time.monotonic() - self.started, 1)}
        return jobfiles.Result(status="OK", outputs=result.outputs,
                               thumbnail=result.thumbnail, metrics=metrics)

    def posed_views(self, request: jobfiles.Request, spec: ModelSpec) -> Any:
        from kernels.models import frames, sfm
        log, report = self.reporter.log, self.reporter.stage("frames", "frames")
        video_fd = open_input(self.dir_fd, request)
        try:
            report(0, "reading the video")
            info = frames.probe(video_fd, log)
            log(f"video: {info.width}x{info.height} {info.codec}, {info.duration:.1f} s, "
                f"{info.frames} frames")
            work = info.working_size(spec.long_side(has_gpu()), request.resize)
            size = info.working_size(max(max(work), sfm.SFM_LONG_SIDE), request.resize)
            tick = time.monotonic()
            images = frames.extract(video_fd, info, spec.frames, size, log)
            log(f"frames: {len(images)} at {size[0]}x{size[1]} in "
                f"{time.monotonic() - tick:.1f} s; working size {work[0]}x{work[1]}")
            report(100, f"{len(images)} frames")
        finally:
            os.close(video_fd)
        tick = time.monotonic()
        views = sfm.reconstruct(images, work, self.reporter.stage("sfm", "sfm"), log,
                                self.threads, self.scratch)
        log(f"sfm: {time.monotonic() - tick:.1f} s")
        return views


def kill_children() -> None:
    """SIGKILL this process's children (an ffmpeg still decoding, a model's helper)."""
    for task in Path("/proc/self/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


def run_job(job_dir: str, models: dict[str, ModelSpec] | None = None) -> int:
    threads = threads_granted()
    limit_threads(threads)
    try:
        dir_fd = jobfiles.open_dir(job_dir)
    except OSError as exc:
        print(f"kraken-atlas: cannot open the job directory {job_dir}: {exc.strerror}",
              file=sys.stderr)
        return 1
    try:
        reporter = Reporter(dir_fd)
    except OSError as exc:
        message = f"cannot write the job's progress or log file: {exc.strerror}"
        print(f"kraken-atlas: {message}", file=sys.stderr)
        jobfiles.write_atomic(dir_fd, jobfiles.RESULT, jobfiles.Result.failed(message).to_json())
        return 1
    scratch = Path(tempfile.mkdtemp(prefix="kraken-job-"))
    job = Job(dir_fd, reporter, threads, scratch, MODELS if models is None else models)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _interrupt)
    worker = threading.Thread(target=job.run, name="job", daemon=True)
    try:
        worker.start()
        while worker.is_alive():
            worker.join(timeout=1.0)
    except Interrupted as exc:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.SIG_IGN)
        reporter.log(f"interrupted by {exc}")
        kill_children()
        job.finish(jobfiles.Result.failed("interrupted"))
        shutil.rmtree(scratch, ignore_errors=True)
        sys.stdout.flush()
        # the worker may sit in C code (ffmpeg pipe, pycolmap, torch): do not wait for it
        os._exit(0 if job.result is not None and job.result.ok else 1)
    shutil.rmtree(scratch, ignore_errors=True)
    reporter.close()
    return 0 if job.result is not None and job.result.ok else 1


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python3 -m kernels.models.run <job directory>", file=sys.stderr)
        return 2
    return run_job(argv[0])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
