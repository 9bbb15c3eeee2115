"""The gaussian-splatting PLY file (numpy only: runs in the project venv)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kernels.models import ply


def cloud(n: int) -> ply.GaussianCloud:
    rng = np.random.default_rng(5)
    return ply.GaussianCloud(
        means=rng.normal(size=(n, 3)), sh_dc=rng.normal(size=(n, 3)),
        sh_rest=rng.normal(size=(n, 15, 3)), opacity_logits=rng.normal(size=n),
        log_scales=rng.normal(size=(n, 3)), quats=rng.normal(size=(n, 4)))


def test_header_lists_the_62_reference_properties_in_order(tmp_path: Path) -> None:
    path = tmp_path / "point_cloud.ply"
    ply.write(path, cloud(3))
    raw = path.read_bytes()
    head = raw[:raw.index(b"end_header\n")].decode().splitlines()
    assert head[:3] == ["ply", "format binary_little_endian 1.0", "element vertex 3"]
    props = [line.split()[2] for line in head if line.startswith("property float ")]
    assert len(props) == 62
    assert props == (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
                     + [f"f_rest_{i}" for i in range(45)]
                     + ["opacity", "scale_0", "scale_1", "scale_2",
                        "rot_0", "rot_1", "rot_2", "rot_3"])
    assert len(raw) - (raw.index(b"end_header\n") + 11) == 3 * 62 * 4


def test_round_trip_keeps_every_value_and_rest_is_channel_major(tmp_path: Path) -> None:
    src = cloud(11)
    path = tmp_path / "c.ply"
    ply.write(path, src)
    back = ply.read(path)
    for name in ("means", "sh_dc", "sh_rest", "opacity_logits", "log_scales", "quats"):
        assert np.allclose(getattr(back, name), getattr(src, name), atol=1e-6), name
    _, _, body = ply.read_header(path.read_bytes())
    row = np.frombuffer(path.read_bytes(), "<f4", count=62, offset=body)
    assert row[3:6].tolist() == [0.0, 0.0, 0.0]                     # normals
    assert row[9 + 2] == pytest.approx(src.sh_rest[0, 2, 0])       # red, 3rd coefficient
    assert row[9 + 15 + 2] == pytest.approx(src.sh_rest[0, 2, 1])  # green, 3rd
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("mutate, message", [
    (lambda raw: b"plx" + raw[3:], "not a PLY"),
    (lambda raw: raw.replace(b"binary_little_endian", b"binary_big_endian"), "little-endian"),
    (lambda raw: raw.replace(b"property float rot_3\n", b""), "layout"),
    (lambda raw: raw[:-4], "body length"),
])
def test_malformed_files_are_refused(tmp_path: Path, mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "c.ply"
    ply.write(path, cloud(2))
    path.write_bytes(mutate(path.read_bytes()))
    with pytest.raises(ply.PlyError, match=message):
        ply.read(path)
