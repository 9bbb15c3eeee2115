"""The model program's reporter: progress.jsonl lines (echoed to stdout after
``@@progress ``) and the human log.txt of one job.

A stage owns a band of the overall percent (frames 0-5, sfm 5-25, model 25-100); the
code running a stage reports its own 0..100, which :meth:`Reporter.stage` scales into the
band. Progress never goes backwards, so the manager can show it as is.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import TextIO

from kernels.models import jobfiles

# Overall-percent bands of the stages run.py drives.
BANDS: dict[str, tuple[float, float]] = {
    "frames": (0.0, 5.0), "sfm": (5.0, 25.0), "model": (25.0, 100.0)}

MIN_STEP = 0.5          # percent
MIN_INTERVAL_S = 2.0

# What a stage receives: report(percent 0..100 of the stage, message, stage name or None).
StageReport = Callable[..., None]
LogFn = Callable[[str], None]


class Reporter:
    def __init__(self, dir_fd: int, stdout: TextIO | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._progress_fd = jobfiles.open_append(dir_fd, jobfiles.PROGRESS)
        self._log_fd = jobfiles.open_append(dir_fd, jobfiles.LOG)
        self._stdout = stdout if stdout is not None else sys.stdout
        self._clock = clock
        self._start = clock()
        self.percent = 0.0
        self._last_stage = ""
        self._last_time = 0.0

    def close(self) -> None:
        for fd in (self._progress_fd, self._log_fd):
            os.close(fd)

    def log(self, text: str) -> None:
        stamp = f"[{self._clock() - self._start:7.1f}s] "
        lines = "".join(stamp + line + "\n" for line in str(text).splitlines() or [""])
        os.write(self._log_fd, lines.encode("utf-8", "replace"))

    def progress(self, stage: str, percent: float, message: str) -> None:
        """One line, unless it would say next to nothing new: the same stage, less than
        ``MIN_STEP`` percent on and less than ``MIN_INTERVAL_S`` after the last one (a
        model may report every step; the file stays small for the manager)."""
        percent = max(self.percent, min(100.0, max(0.0, float(percent))))
        now = self._clock()
        if stage == self._last_stage and percent - self.percent < MIN_STEP \
                and now - self._last_time < MIN_INTERVAL_S and percent < 100.0:
            return
        self.percent, self._last_stage, self._last_time = percent, stage, now
        line = jobfiles.Progress(stage=stage, percent=round(self.percent, 2),
                                 message=jobfiles.one_line(message, 200),
                                 time=round(now, 3)).to_line()
        os.write(self._progress_fd, (line + "\n").encode())
        print(jobfiles.PROGRESS_PREFIX + line, file=self._stdout, flush=True)

    def stage(self, band: str, default_stage: str) -> StageReport:
        """A ``report(percent, message, stage=None)`` for one band of the overall percent;
        ``stage`` lets a model name its sub-stage (train, mesh, export)."""
        low, high = BANDS[band]

        def report(percent: float, message: str, stage: str | None = None) -> None:
            fraction = min(100.0, max(0.0, float(percent))) / 100.0
            name = stage if stage in jobfiles.STAGES else default_stage
            self.progress(name, low + (high - low) * fraction, message)
        return report
