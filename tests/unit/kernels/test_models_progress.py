"""The model program's progress writer: what the manager and a human watching see."""
from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from kernels.models import jobfiles
from kernels.models.progress import Reporter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def job_fd(tmp_path: Path) -> Iterator[int]:
    fd = jobfiles.open_dir(tmp_path)
    yield fd
    os.close(fd)


def lines(tmp_path: Path) -> list[jobfiles.Progress]:
    return [jobfiles.parse_progress_line(line)
            for line in (tmp_path / "progress.jsonl").read_text().splitlines()]


def test_stages_scale_into_their_band_and_never_go_back(tmp_path: Path, job_fd: int) -> None:
    out, clock = io.StringIO(), Clock()
    reporter = Reporter(job_fd, out, clock)
    reporter.stage("frames", "frames")(100, "48 frames")
    sfm = reporter.stage("sfm", "sfm")
    sfm(50, "matching")
    sfm(10, "a late callback")          # neither back nor a line of its own
    clock.now += 5
    model = reporter.stage("model", "train")
    model(20, "step 20")
    model(100, "meshing", "mesh")
    model(100, "bogus stage", "nap")
    reporter.close()
    got = [(p.stage, p.percent) for p in lines(tmp_path)]
    assert got == [("frames", 5.0), ("sfm", 15.0), ("train", 40.0),
                   ("mesh", 100.0), ("train", 100.0)]
    printed = out.getvalue().splitlines()
    assert all(line.startswith(jobfiles.PROGRESS_PREFIX) for line in printed)
    assert len(printed) == len(got)


def test_a_model_reporting_every_step_does_not_flood_the_file(tmp_path: Path,
                                                              job_fd: int) -> None:
    clock = Clock()
    reporter = Reporter(job_fd, io.StringIO(), clock)
    train = reporter.stage("model", "train")
    for step in range(30000):
        clock.now += 0.001
        train(100 * step / 30000, f"step {step}")
    reporter.close()
    assert 100 < len(lines(tmp_path)) < 300


def test_the_log_stamps_each_line(tmp_path: Path, job_fd: int) -> None:
    clock = Clock()
    reporter = Reporter(job_fd, io.StringIO(), clock)
    clock.now += 2.5
    reporter.log("sfm: registered 40 of 40 frames\nsecond line")
    reporter.close()
    assert (tmp_path / "log.txt").read_text().splitlines() == [
        "[    2.5s] sfm: registered 40 of 40 frames", "[    2.5s] second line"]


def test_a_planted_symlink_is_not_written_through(tmp_path: Path, job_fd: int) -> None:
    victim = tmp_path.parent / f"{tmp_path.name}-victim"
    victim.write_text("keep")
    (tmp_path / "progress.jsonl").symlink_to(victim)
    with pytest.raises(OSError):
        Reporter(job_fd, io.StringIO())
    assert victim.read_text() == "keep"
