"""Checking an uploaded video before anything is stored: the size cap while it streams
to a temporary file, then a probe with PyAV (FFmpeg's demuxers) in a worker thread under
a time cap: a container that opens, a video stream, a decodable frame, its duration and
resolution inside the model's limits (manager.atlas.catalogue.Limits)."""
from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import av

from common.errors import InvalidVideo
from manager.atlas.catalogue import Limits

CHUNK = 256 * 1024
ABSOLUTE_MAX = 2**40  # a model without max_bytes still has a bound


@dataclass(frozen=True, slots=True)
class VideoInfo:
    seconds: float
    width: int
    height: int
    codec: str


def _mib(n: int) -> str:
    return f"{n / 2**20:g} MiB"


@contextlib.asynccontextmanager
async def temp_upload(directory: Path | None) -> AsyncIterator[tuple[Path, int]]:
    """A new temporary file (path, descriptor) removed when the block ends, always."""
    if directory is not None:
        await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="atlas-upload-", suffix=".mp4", dir=directory)
    try:
        yield Path(name), fd
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


async def stream_to(chunks: AsyncIterator[bytes], fd: int, limits: Limits) -> int:
    """Write ``chunks`` to ``fd``; refuse the upload at the first byte over the cap."""
    cap = limits.max_bytes if limits.max_bytes is not None else ABSOLUTE_MAX
    total = 0
    async for chunk in chunks:
        total += len(chunk)
        if total > cap:
            raise InvalidVideo(f"the video is larger than {_mib(cap)}, this model's limit")
        await asyncio.to_thread(_write_all, fd, chunk)
    if limits.min_bytes is not None and total < limits.min_bytes:
        raise InvalidVideo(f"the video is {_mib(total)}; this model needs at least "
                           f"{_mib(limits.min_bytes)}")
    if total == 0:
        raise InvalidVideo("the video is empty")
    return total


def probe(path: Path) -> VideoInfo:
    """Open ``path`` as a media container and decode its first video frame."""
    try:
        with av.open(str(path), mode="r", metadata_errors="ignore") as container:
            streams = container.streams.video
            if not streams:
                raise InvalidVideo("the file holds no video stream")
            stream = streams[0]
            seconds = _duration(container, stream)
            frame = next(container.decode(stream), None)
            if frame is None:
                raise InvalidVideo("the video stream holds no decodable frame")
            return VideoInfo(seconds, frame.width, frame.height, stream.codec_context.name)
    except (av.FFmpegError, StopIteration, ValueError, OSError) as e:
        raise InvalidVideo(f"the file is not a readable video ({type(e).__name__})") from None


def _duration(container: av.container.InputContainer, stream: av.VideoStream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    raise InvalidVideo("the video's duration is unknown")


def check(info: VideoInfo, limits: Limits) -> None:
    """The model's limits on duration and resolution (long side, short side)."""
    if limits.min_seconds is not None and info.seconds < limits.min_seconds:
        raise InvalidVideo(f"the video lasts {info.seconds:.1f} s; this model needs at "
                           f"least {limits.min_seconds:g} s")
    if limits.max_seconds is not None and info.seconds > limits.max_seconds:
        raise InvalidVideo(f"the video lasts {info.seconds:.1f} s; this model takes at "
                           f"most {limits.max_seconds:g} s")
    long, short = max(info.width, info.height), min(info.width, info.height)
    size = f"{info.width}x{info.height}"
    if limits.min_resolution is not None and (long < limits.min_resolution[0]
                                              or short < limits.min_resolution[1]):
        low = limits.min_resolution
        raise InvalidVideo(f"the video is {size}; this model needs at least {low[0]}x{low[1]}")
    if limits.max_resolution is not None and (long > limits.max_resolution[0]
                                              or short > limits.max_resolution[1]):
        high = limits.max_resolution
        raise InvalidVideo(f"the video is {size}; this model takes at most "
                           f"{high[0]}x{high[1]}")


async def validate(path: Path, limits: Limits, timeout: float) -> VideoInfo:
    """Probe in a worker thread, at most ``timeout`` seconds, then check the limits."""
    try:
        async with asyncio.timeout(timeout):
            info = await asyncio.to_thread(probe, path)
    except TimeoutError:
        raise InvalidVideo(f"the video could not be checked within {timeout:g} s") from None
    check(info, limits)
    return info
