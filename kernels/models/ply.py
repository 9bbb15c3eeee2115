"""The gaussian-splatting point cloud file (graphdeco-inria layout), numpy only.

A binary little-endian PLY with one ``vertex`` element of 62 float32 properties, in this
order: position, a zero normal, the SH colour (DC then the 45 higher-order coefficients
channel-major: all of red's, then green's, then blue's), the opacity as a pre-sigmoid
logit, log scales and the rotation quaternion (w x y z, not necessarily normalised).
Viewers of 3D gaussian splats (and the reference implementation) read this layout.
"""
from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass

import numpy as np

SH_REST = 45  # degree-3 SH: 15 coefficients per channel beyond the DC term
PROPERTIES = (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
              + [f"f_rest_{i}" for i in range(SH_REST)]
              + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


class PlyError(ValueError):
    """The file is not a gaussian-splatting PLY of the expected layout."""


@dataclass
class GaussianCloud:
    means: np.ndarray        # (N, 3)
    sh_dc: np.ndarray        # (N, 3)
    sh_rest: np.ndarray      # (N, 15, 3): coefficient-major, as the model keeps them
    opacity_logits: np.ndarray  # (N,)
    log_scales: np.ndarray   # (N, 3)
    quats: np.ndarray        # (N, 4) w x y z

    def __len__(self) -> int:
        return int(self.means.shape[0])


def _header(n: int) -> bytes:
    lines = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    lines += [f"property float {name}" for name in PROPERTIES]
    lines.append("end_header")
    return ("\n".join(lines) + "\n").encode("ascii")


def write(path: pathlib.Path | str, cloud: GaussianCloud) -> None:
    """Write ``cloud`` to ``path`` (via a temporary file renamed into place)."""
    n = len(cloud)
    rest = np.asarray(cloud.sh_rest, dtype=np.float32).reshape(n, 15, 3)
    data = np.concatenate([
        np.asarray(cloud.means, np.float32).reshape(n, 3),
        np.zeros((n, 3), np.float32),
        np.asarray(cloud.sh_dc, np.float32).reshape(n, 3),
        rest.transpose(0, 2, 1).reshape(n, SH_REST),  # channel-major
        np.asarray(cloud.opacity_logits, np.float32).reshape(n, 1),
        np.asarray(cloud.log_scales, np.float32).reshape(n, 3),
        np.asarray(cloud.quats, np.float32).reshape(n, 4),
    ], axis=1).astype("<f4")
    path = pathlib.Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(_header(n))
        f.write(data.tobytes())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_header(raw: bytes) -> tuple[int, list[str], int]:
    """(vertex count, property names, offset of the binary body) of a PLY's bytes."""
    end = raw.find(b"end_header\n")
    if not raw.startswith(b"ply\n") or end < 0:
        raise PlyError("not a PLY file")
    lines = raw[:end].decode("ascii", "replace").splitlines()
    if "format binary_little_endian 1.0" not in lines:
        raise PlyError("not a binary little-endian PLY")
    count = -1
    names: list[str] = []
    for line in lines:
        parts = line.split()
        if parts[:2] == ["element", "vertex"] and len(parts) == 3:
            count = int(parts[2])
        elif parts[:1] == ["element"]:
            raise PlyError(f"unexpected element {parts[1:2]}")
        elif parts[:1] == ["property"]:
            if len(parts) != 3 or parts[1] != "float":
                raise PlyError(f"unexpected property {line!r}")
            names.append(parts[2])
    if count < 0:
        raise PlyError("no vertex element")
    return count, names, end + len(b"end_header\n")


def read(path: pathlib.Path | str) -> GaussianCloud:
    """Read a file written by ``write`` (or by the reference implementation)."""
    raw = pathlib.Path(path).read_bytes()
    n, names, body = read_header(raw)
    if names != PROPERTIES:
        raise PlyError("the vertex properties are not the gaussian-splatting layout")
    if len(raw) - body != n * len(PROPERTIES) * 4:
        raise PlyError("the body length does not match the vertex count")
    data = np.frombuffer(raw, dtype="<f4", count=n * len(PROPERTIES), offset=body)
    data = data.reshape(n, len(PROPERTIES)).astype(np.float32)
    return GaussianCloud(
        means=data[:, 0:3], sh_dc=data[:, 6:9],
        sh_rest=data[:, 9:54].reshape(n, 3, 15).transpose(0, 2, 1),
        opacity_logits=data[:, 54], log_scales=data[:, 55:58], quats=data[:, 58:62])
