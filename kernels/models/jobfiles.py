"""The job directory of an Atlas generation job: its file names and the schema of
request.json, progress.jsonl lines and result.json — the one definition both the manager
and the model program (``kernels.models.run``) use.

Standard library only (the manager imports this without torch or numpy). Files the model
program reads or writes in the job directory are opened relative to the directory's file
descriptor with ``O_NOFOLLOW``: the directory lives in the owner's virtual folder, so a
name in it may have been replaced by a symlink.
"""
from __future__ import annotations

import json
import math
import os
import re
import stat
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from typing import Any

REQUEST = "request.json"
INPUT_DIR = "input"
PROGRESS = "progress.jsonl"
LOG = "log.txt"
OUTPUTS = "outputs"
RESULT = "result.json"
THUMBNAIL = "thumbnail.png"
PROGRESS_PREFIX = "@@progress "

STAGES = ("frames", "sfm", "train", "mesh", "export")
STATUSES = ("OK", "NG")
MAX_EPOCH = 100
MAX_JSON_BYTES = 1 << 20
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


class JobFileError(ValueError):
    """A job file is missing, too big, not a regular file, or does not match the schema."""


def safe_name(name: object) -> str:
    """``name`` when it is one plain file name (no separator, no leading dot), else raise."""
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name):
        raise JobFileError(f"not a safe file name: {name!r}")
    return name


def _require(data: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = data.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise JobFileError(f"{key!r} is missing or not a {getattr(kind, '__name__', kind)}")
    return value


def _load_object(text: str | bytes, what: str) -> dict[str, Any]:
    if len(text) > MAX_JSON_BYTES:
        raise JobFileError(f"{what} is larger than {MAX_JSON_BYTES} bytes")
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise JobFileError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise JobFileError(f"{what} is not a JSON object")
    return data


@dataclass(frozen=True)
class Request:
    request_id: str
    model: str
    item_name: str
    epoch: int
    resize: bool
    input: str                      # "input/<safe file name>"

    @property
    def input_name(self) -> str:
        return self.input.split("/", 1)[1]

    def to_json(self) -> str:
        return json.dumps({"requestId": self.request_id, "model": self.model,
                           "itemName": self.item_name, "epoch": self.epoch,
                           "resize": self.resize, "input": self.input})


def parse_request(text: str | bytes) -> Request:
    data = _load_object(text, REQUEST)
    epoch = _require(data, "epoch", int)
    if not 1 <= epoch <= MAX_EPOCH:
        raise JobFileError(f"'epoch' must be 1..{MAX_EPOCH}, not {epoch}")
    source = _require(data, "input", str)
    folder, _, name = source.partition("/")
    if folder != INPUT_DIR:
        raise JobFileError(f"'input' must be {INPUT_DIR}/<file name>, not {source!r}")
    safe_name(name)
    return Request(request_id=_require(data, "requestId", str), model=_require(data, "model", str),
                   item_name=_require(data, "itemName", str), epoch=epoch,
                   resize=_require(data, "resize", bool), input=source)


@dataclass(frozen=True)
class Progress:
    stage: str
    percent: float                  # overall job percent, 0..100
    message: str
    time: float

    def to_line(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


def parse_progress_line(line: str) -> Progress:
    data = _load_object(line, "progress line")
    stage = _require(data, "stage", str)
    if stage not in STAGES:
        raise JobFileError(f"unknown stage {stage!r}")
    percent = float(_require(data, "percent", (int, float)))
    if not 0 <= percent <= 100:
        raise JobFileError(f"percent out of range: {percent}")
    return Progress(stage=stage, percent=percent, message=_require(data, "message", str),
                    time=float(_require(data, "time", (int, float))))


def last_progress(text: str) -> Progress | None:
    """The last well-formed line of a progress.jsonl being written (a torn or bad line
    is skipped, not fatal: the file is written by the job, read while it runs)."""
    for line in reversed(text.splitlines()):
        try:
            return parse_progress_line(line)
        except JobFileError:
            continue
    return None


@dataclass(frozen=True)
class Result:
    status: str
    error: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    thumbnail: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "OK"

    @classmethod
    def failed(cls, error: str) -> Result:
        return cls(status="NG", error=one_line(error))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)


def one_line(text: str, limit: int = 500) -> str:
    line = " ".join(str(text).split()) or "unknown error"
    return line if len(line) <= limit else line[: limit - 1] + "…"


def parse_result(text: str | bytes) -> Result:
    data = _load_object(text, RESULT)
    status = _require(data, "status", str)
    if status not in STATUSES:
        raise JobFileError(f"'status' must be OK or NG, not {status!r}")
    error = data.get("error")
    if status == "NG" and not isinstance(error, str):
        raise JobFileError("an NG result needs an 'error' string")
    outputs = data.get("outputs") or {}
    if not isinstance(outputs, dict):
        raise JobFileError("'outputs' is not an object")
    outputs = {str(code): safe_name(name) for code, name in outputs.items()}
    thumbnail = data.get("thumbnail")
    metrics = data.get("metrics") or {}
    if not isinstance(metrics, dict) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for v in metrics.values()):
        raise JobFileError("'metrics' is not an object of finite numbers")
    return Result(status=status, error=error if status == "NG" else None, outputs=outputs,
                  thumbnail=None if thumbnail is None else safe_name(thumbnail),
                  metrics={str(k): float(v) for k, v in metrics.items()})


def open_dir(path: str | os.PathLike[str], dir_fd: int | None = None) -> int:
    """A directory descriptor; a symlink in the last component is refused."""
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                   dir_fd=dir_fd)


def read_fixed(dir_fd: int, name: str, limit: int = MAX_JSON_BYTES) -> bytes:
    """The bytes of regular file ``name`` in the directory, at most ``limit`` of them."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                     dir_fd=dir_fd)
    except FileNotFoundError:
        raise JobFileError(f"{name} is missing") from None
    except OSError as exc:
        raise JobFileError(f"cannot open {name}: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise JobFileError(f"{name} is not a regular file")
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise JobFileError(f"{name} is larger than {limit} bytes")
    return data


def write_atomic(dir_fd: int, name: str, data: str) -> None:
    """Write ``name`` so a reader sees the old file or the whole new one, never a part:
    ``name.tmp`` (never through a symlink), fsync, rename over ``name``, fsync the dir."""
    tmp = name + ".tmp"
    with suppress(FileNotFoundError):       # a leftover, or a planted link: not followed
        os.unlink(tmp, dir_fd=dir_fd)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o644, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise
    os.fsync(dir_fd)


def open_append(dir_fd: int, name: str) -> int:
    """A descriptor appending to ``name`` (created if missing; a symlink is refused)."""
    return os.open(name, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                   0o644, dir_fd=dir_fd)


def make_job_dir(root: str | os.PathLike[str], request: Request, video: bytes) -> str:
    """A job directory as the manager lays it out (for self-tests and benchmarks that run
    the job runner without a manager): ``root/<requestId>/{request.json,input/…}``."""
    job = os.path.join(root, safe_name(request.request_id))
    os.makedirs(os.path.join(job, INPUT_DIR))
    with open(os.path.join(job, request.input), "wb") as fh:
        fh.write(video)
    with open(os.path.join(job, REQUEST), "w") as fh:
        fh.write(request.to_json())
    return job
