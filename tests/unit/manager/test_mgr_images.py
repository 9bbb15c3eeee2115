"""lang → image resolution, instanceMemory units and image-label caps."""
from __future__ import annotations

import pytest

from manager.services.images import memory_bytes, resolve_image

IMAGES = ["kraken/python:latest", "kraken/python:3.11", "kraken/r:4.2",
          "localhost:5000/lab/julia:1.9"]


@pytest.mark.parametrize("lang,expected", [
    ("python", "kraken/python:latest"),
    ("python:latest", "kraken/python:latest"),
    ("python:3.11", "kraken/python:3.11"),
    ("kraken/python:3.11", "kraken/python:3.11"),
    ("kraken/python", "kraken/python:latest"),
    ("r:4.2", "kraken/r:4.2"),
    ("julia:1.9", "localhost:5000/lab/julia:1.9"),
    ("lab/julia:1.9", "localhost:5000/lab/julia:1.9"),
    ("python:3.6", None), ("r", None), ("other/python:3.11", None), ("pyth", None),
])
def test_resolve_image(lang: str, expected: str | None) -> None:
    assert resolve_image(lang, IMAGES) == expected


@pytest.mark.parametrize("value,expected", [
    (0.25, 2**28), (1, 2**30), (31.5, int(31.5 * 2**30)), (32, 32 * 2**20),
    (512, 512 * 2**20), (51240, 51240 * 2**20),
])
def test_instance_memory_units(value: float, expected: int) -> None:
    assert memory_bytes(value) == expected
