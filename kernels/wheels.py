"""PyPI wheels for the kernel images, pinned with hashes and cached on the host.

A recipe's ``wheels.txt`` is a pip requirements file in ``--require-hashes`` form
(``name==version --hash=sha256:…`` per line). The wheels are downloaded on the host
into ``var/wheels/`` (once: a wheel whose hash is already there is not fetched again)
and unpacked by the host's pip with ``--target`` into the build context for the image's
Python (CPython 3.11, glibc x86_64), without dependencies. The image itself never runs
pip and never reaches the network.
"""
from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

PYTHON_VERSION = "3.11"
# Debian bookworm has glibc 2.36: wheels tagged for any manylinux up to it run there.
PLATFORMS = tuple([f"manylinux_2_{minor}_x86_64" for minor in range(36, 16, -1)]
                  + ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"])
_LINE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;]+)"
                   r"(?P<hashes>(?:\s+--hash=sha256:[0-9a-f]{64})+)\s*$")


class WheelError(Exception):
    """The wheel list is malformed or a wheel could not be had; one line for the user."""


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    hashes: tuple[str, ...]


def read_pins(path: Path) -> list[Pin]:
    """The pins of a requirements file; every line must be ``name==version --hash=…``."""
    pins: list[Pin] = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = _LINE.match(line)
        if m is None:
            raise WheelError(f"{path.name}:{number}: expected 'name==version "
                             f"--hash=sha256:<64 hex>', got {line!r}")
        hashes = tuple(h.split(":", 1)[1] for h in m["hashes"].split())
        pins.append(Pin(m["name"], m["version"], hashes))
    return pins


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def missing(pins: Sequence[Pin], cache: Path) -> list[Pin]:
    """The pins none of whose hashes matches a wheel in ``cache``."""
    have = {_sha256(p) for p in cache.glob("*.whl")} if cache.is_dir() else set()
    return [pin for pin in pins if not have.intersection(pin.hashes)]


def _platform_args() -> list[str]:
    args = ["--only-binary=:all:", "--no-deps", "--python-version", PYTHON_VERSION,
            "--implementation", "cp"]
    for platform in PLATFORMS:
        args += ["--platform", platform]
    return args


def _pip(args: Sequence[str], what: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check",
                           *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        raise WheelError(f"{what} failed (exit {proc.returncode})"
                         + (f": {lines[-1]}" if lines else ""))


def fetch(requirements: Path, cache: Path) -> int:
    """Download the wheels of ``requirements`` not yet in ``cache``; return how many."""
    todo = missing(read_pins(requirements), cache)
    if not todo:
        return 0
    cache.mkdir(parents=True, exist_ok=True)
    # The whole file, so that pip checks every hash (it refuses a partial pin set).
    _pip(["download", "--quiet", "--require-hashes", "-r", str(requirements),
          "--dest", str(cache), *_platform_args()], f"pip download ({requirements.name})")
    still = missing(todo, cache)
    if still:
        raise WheelError(f"pip download gave no wheel matching the hash of {still[0].name}")
    return len(todo)


def install(requirements: Path, cache: Path, target: Path) -> None:
    """Unpack the cached wheels into ``target`` (a site-packages folder), offline."""
    _pip(["install", "--quiet", "--no-index", "--find-links", str(cache), "--require-hashes",
          "-r", str(requirements), "--target", str(target), "--no-compile",
          *_platform_args()], f"pip install --target ({requirements.name})")
    # Console scripts pip wrote for the host's interpreter are meaningless in the image;
    # programs shipped as wheel data (ninja) stay.
    for script in (target / "bin").glob("*"):
        with open(script, "rb") as fh:
            if fh.read(2) == b"#!":
                script.unlink()
