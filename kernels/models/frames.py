"""Video in, frames out: probe a video with ffprobe and pull N frames evenly spread over
it, scaled to a working size, as float32 RGB arrays.

ffmpeg and ffprobe run from an argument list (never a shell), with a timeout, and their
stderr goes to the job's log. The video is passed as an already opened descriptor
(``/proc/self/fd/N``) so the caller decides how it was opened (O_NOFOLLOW).
"""
from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

PROBE_TIMEOUT_S = 60
EXTRACT_TIMEOUT_S = 900
HD = (1280, 720)            # the seed's "resize: change the resolution of the input to HD"
MIN_FRAMES = 2


class VideoError(Exception):
    """The input is not a video we can use (one line, shown to the user)."""


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    codec: str
    duration: float             # seconds
    frames: int                 # counted or estimated from duration × rate

    def working_size(self, long_side: int, resize: bool = False) -> tuple[int, int]:
        """(width, height) with the longest side at most ``long_side``, aspect kept.
        ``resize`` first scales the video to fit HD (up or down), as the seed's flag does;
        without it a small video is never scaled up."""
        width, height = float(self.width), float(self.height)
        if resize:
            scale = min(HD[0] / max(width, height), HD[1] / min(width, height))
            width, height = width * scale, height * scale
        scale = min(1.0, long_side / max(width, height))
        return max(2, round(width * scale)), max(2, round(height * scale))


def _run(args: list[str], timeout: float, log: Callable[[str], None],
         pass_fds: tuple[int, ...] = ()) -> bytes:
    try:
        done = subprocess.run(args, capture_output=True, timeout=timeout, pass_fds=pass_fds,
                              check=False)
    except subprocess.TimeoutExpired:
        raise VideoError(f"{args[0]} took longer than {timeout:.0f} s") from None
    stderr = done.stderr.decode("utf-8", "replace").strip()
    if stderr:
        log(f"{args[0]}: {stderr[-2000:]}")
    if done.returncode != 0:
        raise VideoError("not a video (ffprobe/ffmpeg could not decode it)")
    return done.stdout


def _fd_path(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


def probe(fd: int, log: Callable[[str], None]) -> VideoInfo:
    """The first video stream of the open file ``fd``; VideoError "not a video" else."""
    out = _run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets",
                "-show_entries", "stream=codec_name,width,height,nb_frames,nb_read_packets,"
                "duration,avg_frame_rate:stream_side_data=rotation:stream_tags=rotate"
                ":format=duration,format_name", "-of", "json", _fd_path(fd)],
               PROBE_TIMEOUT_S, log, (fd,))
    data = json.loads(out or b"{}")
    streams = data.get("streams") or []
    fmt = data.get("format") or {}
    if not streams or fmt.get("format_name", "").endswith("_pipe") \
            or fmt.get("format_name") == "image2":
        raise VideoError("not a video (no video stream)")
    stream = streams[0]
    duration = _number(stream.get("duration")) or _number(fmt.get("duration"))
    rate = _rate(stream.get("avg_frame_rate"))
    frames = int(_number(stream.get("nb_frames")) or _number(stream.get("nb_read_packets"))
                 or round(duration * rate))
    if frames < MIN_FRAMES or duration <= 0:
        raise VideoError("not a video (a single image or an empty stream)")
    width, height = int(stream["width"]), int(stream["height"])
    if _rotation(stream) % 180 == 90:      # ffmpeg turns the frames upright when decoding
        width, height = height, width
    return VideoInfo(width=width, height=height,
                     codec=str(stream.get("codec_name", "?")), duration=duration,
                     frames=frames)


def _rotation(stream: dict[str, object]) -> int:
    """Degrees a phone video is turned by (display matrix side data, or the old tag)."""
    sides = stream.get("side_data_list")
    for side in sides if isinstance(sides, list) else []:
        if isinstance(side, dict) and "rotation" in side:
            return round(_number(side["rotation"]))
    tags = stream.get("tags")
    return round(_number(tags.get("rotate"))) if isinstance(tags, dict) else 0


def _number(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0


def _rate(value: object) -> float:
    try:
        return float(Fraction(str(value)))
    except (ValueError, ZeroDivisionError):
        return 0.0


def pick_indices(total: int, count: int) -> list[int]:
    """``count`` frame indices evenly spread over ``0..total-1`` (all when fewer)."""
    if count >= total:
        return list(range(total))
    return sorted({round(i * (total - 1) / (count - 1)) for i in range(count)})


def extract(fd: int, info: VideoInfo, count: int, size: tuple[int, int],
            log: Callable[[str], None]) -> np.ndarray:
    """(n, H, W, 3) float32 frames in [0, 1]: ``count`` frames evenly spread over the
    video (fewer when the video is shorter), scaled to ``size`` = (width, height)."""
    width, height = size
    wanted = pick_indices(info.frames, count)
    select = "+".join(f"eq(n\\,{i})" for i in wanted)
    out = _run(["ffmpeg", "-nostdin", "-v", "error", "-i", _fd_path(fd), "-an", "-sn",
                "-vf", f"select='{select}',scale={width}:{height}:flags=area",
                "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"],
               EXTRACT_TIMEOUT_S, log, (fd,))
    frame_bytes = width * height * 3
    n = len(out) // frame_bytes
    if n < MIN_FRAMES:
        raise VideoError(f"the video gave {n} frames; at least {MIN_FRAMES} are needed")
    frames = np.frombuffer(out[: n * frame_bytes], np.uint8).reshape(n, height, width, 3)
    return frames.astype(np.float32) / 255.0
