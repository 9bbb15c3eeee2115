"""The job directory contract (kernels.models.jobfiles): what the manager parses and what
the model program writes."""
from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kernels.models import jobfiles
from kernels.models.jobfiles import JobFileError

REQUEST = {"requestId": "r-1", "model": "gaussian-splatting", "itemName": "chair",
           "epoch": 10, "resize": False, "input": "input/clip.mp4"}


@pytest.fixture
def job_fd(tmp_path: Path) -> Iterator[int]:
    fd = jobfiles.open_dir(tmp_path)
    yield fd
    os.close(fd)


def test_a_request_parses_and_round_trips() -> None:
    request = jobfiles.parse_request(json.dumps(REQUEST))
    assert (request.model, request.epoch, request.input_name) == ("gaussian-splatting", 10,
                                                                  "clip.mp4")
    assert jobfiles.parse_request(request.to_json()) == request


@pytest.mark.parametrize(("change", "message"), [
    ({"epoch": 0}, "epoch"), ({"epoch": 101}, "epoch"), ({"epoch": True}, "epoch"),
    ({"epoch": "5"}, "epoch"), ({"resize": 1}, "resize"), ({"model": None}, "model"),
    ({"input": "../etc/passwd"}, "input"), ({"input": "input/../x.mp4"}, "safe"),
    ({"input": "input/.hidden"}, "safe"), ({"input": "input/a/b.mp4"}, "safe"),
    ({"input": "outputs/clip.mp4"}, "input"),
])
def test_a_bad_request_says_which_field(change: dict[str, object], message: str) -> None:
    with pytest.raises(JobFileError, match=message):
        jobfiles.parse_request(json.dumps({**REQUEST, **change}))


@pytest.mark.parametrize("text", ["", "[1]", "{", "null", "x" * (jobfiles.MAX_JSON_BYTES + 1)])
def test_a_request_that_is_not_a_json_object_is_refused(text: str) -> None:
    with pytest.raises(JobFileError):
        jobfiles.parse_request(text)


def test_results_round_trip_and_ng_errors_are_one_line() -> None:
    ok = jobfiles.Result(status="OK", outputs={"1": "point_cloud.ply"},
                         thumbnail="thumbnail.png", metrics={"psnr": 27.3, "seconds": 201.0})
    assert jobfiles.parse_result(ok.to_json()) == ok
    failed = jobfiles.Result.failed("Traceback\n  boom\n\tbang")
    assert failed.error == "Traceback boom bang"
    assert jobfiles.parse_result(failed.to_json()) == failed and not failed.ok


@pytest.mark.parametrize("data", [
    {"status": "DONE"}, {"status": "NG"}, {"status": "OK", "outputs": {"1": "../x.ply"}},
    {"status": "OK", "outputs": ["a"]}, {"status": "OK", "thumbnail": "/etc/passwd"},
    {"status": "OK", "metrics": {"psnr": "high"}}, {"status": "OK", "metrics": {"x": True}},
])
def test_a_bad_result_is_refused(data: dict[str, object]) -> None:
    with pytest.raises(JobFileError):
        jobfiles.parse_result(json.dumps(data))


def test_a_non_finite_metric_is_refused() -> None:
    with pytest.raises(JobFileError, match="finite"):
        jobfiles.parse_result('{"status": "OK", "metrics": {"psnr": NaN}}')


def test_progress_lines_parse_and_a_torn_last_line_is_skipped() -> None:
    first = jobfiles.Progress(stage="sfm", percent=12.5, message="matching", time=1.0)
    second = jobfiles.Progress(stage="train", percent=40, message="step 3", time=2.0)
    assert jobfiles.parse_progress_line(first.to_line()) == first
    text = first.to_line() + "\n" + second.to_line() + "\n" + '{"stage": "tra'
    assert jobfiles.last_progress(text) == second
    assert jobfiles.last_progress("") is None
    for bad in ('{"stage": "nap", "percent": 1, "message": "", "time": 0}',
                '{"stage": "sfm", "percent": 101, "message": "", "time": 0}'):
        with pytest.raises(JobFileError):
            jobfiles.parse_progress_line(bad)


def test_atomic_write_replaces_the_whole_file_and_leaves_no_temp(tmp_path: Path,
                                                                 job_fd: int) -> None:
    jobfiles.write_atomic(job_fd, jobfiles.RESULT, "old")
    jobfiles.write_atomic(job_fd, jobfiles.RESULT, "new")
    assert (tmp_path / "result.json").read_text() == "new"
    assert sorted(os.listdir(tmp_path)) == ["result.json"]


def test_atomic_write_replaces_a_planted_symlink_instead_of_following_it(
        tmp_path: Path, job_fd: int) -> None:
    victim = tmp_path.parent / f"{tmp_path.name}-victim"
    victim.write_text("keep")
    (tmp_path / "result.json").symlink_to(victim)
    jobfiles.write_atomic(job_fd, jobfiles.RESULT, "{}")
    assert victim.read_text() == "keep"
    assert not (tmp_path / "result.json").is_symlink()


def test_a_planted_symlink_for_the_temp_file_is_not_followed(tmp_path: Path,
                                                             job_fd: int) -> None:
    victim = tmp_path.parent / f"{tmp_path.name}-victim"
    victim.write_text("keep")
    (tmp_path / "result.json.tmp").symlink_to(victim)
    jobfiles.write_atomic(job_fd, jobfiles.RESULT, "{}")
    assert victim.read_text() == "keep" and (tmp_path / "result.json").read_text() == "{}"
    assert sorted(os.listdir(tmp_path)) == ["result.json"]


def test_readers_see_the_old_or_the_new_result_never_a_part(tmp_path: Path,
                                                            job_fd: int) -> None:
    big = jobfiles.Result(status="OK", metrics={f"m{i}": float(i) for i in range(2000)})
    jobfiles.write_atomic(job_fd, jobfiles.RESULT, jobfiles.Result.failed("x").to_json())
    stop = threading.Event()
    seen: list[str] = []

    def read() -> None:
        while not stop.is_set():
            seen.append(jobfiles.parse_result((tmp_path / "result.json").read_text()).status)
    reader = threading.Thread(target=read)
    reader.start()
    for _ in range(30):
        jobfiles.write_atomic(job_fd, jobfiles.RESULT, big.to_json())
    stop.set()
    reader.join()
    assert set(seen) <= {"OK", "NG"} and seen


def test_read_fixed_refuses_symlinks_directories_and_big_files(tmp_path: Path,
                                                                job_fd: int) -> None:
    (tmp_path / "outside").write_text("{}")
    (tmp_path / "request.json").symlink_to(tmp_path / "outside")
    with pytest.raises(JobFileError, match="cannot open request.json"):
        jobfiles.read_fixed(job_fd, jobfiles.REQUEST)
    (tmp_path / "log.txt").mkdir()
    with pytest.raises(JobFileError, match="not a regular file"):
        jobfiles.read_fixed(job_fd, jobfiles.LOG)
    (tmp_path / "big").write_bytes(b"x" * 11)
    with pytest.raises(JobFileError, match="larger"):
        jobfiles.read_fixed(job_fd, "big", limit=10)
    with pytest.raises(JobFileError, match="missing"):
        jobfiles.read_fixed(job_fd, jobfiles.RESULT)


def test_open_dir_refuses_a_symlinked_directory(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "outputs").symlink_to(tmp_path / "real")
    with pytest.raises(OSError):
        jobfiles.open_dir(tmp_path / "outputs")
