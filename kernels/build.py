"""Build the kernel images without a registry: ``python -m kernels.build [python|base|all]``.

``kraken/base:bookworm`` is a Debian root filesystem made by mmdebstrap from the
host's own apt sources and ``docker import``ed; ``kraken/python:latest`` (also
``:3.11``) is layered on it by ``docker build`` with the runner copied in.
Each image carries the label ``kraken.recipe-hash``: a hash over its recipe files,
the sources copied into it and its parent's hash. A build is skipped when the
image already has the hash of the current recipe, so images are rebuilt only when
their recipe changes. Build contexts are assembled in a temporary directory.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from kernels.apt_sources import read_host_sources

REPO = Path(__file__).resolve().parent.parent
IMAGES = REPO / "kernels" / "images"
HASH_LABEL = "kraken.recipe-hash"
BASE_IMAGE = "kraken/base:bookworm"
PYTHON_IMAGE = "kraken/python:latest"
PYTHON_TAGS = (PYTHON_IMAGE, "kraken/python:3.11")
SUITE = "bookworm"
RUNNER_SOURCES = ("common/__init__.py", "common/codec.py", "common/console.py",
                  "common/errors.py", "common/limits.py", "common/msg_runner.py",
                  "common/services.py", "kernels/__init__.py")


class BuildError(Exception):
    """A build step failed; the message is the one line shown to the user."""


@dataclass(frozen=True)
class Context:
    """Files that make up a recipe: (source on the host, path inside the build context)."""

    files: tuple[tuple[Path, str], ...]

    def digest(self, parent_hash: str = "") -> str:
        h = hashlib.sha256(parent_hash.encode())
        for src, arcname in sorted(self.files, key=lambda f: f[1]):
            h.update(arcname.encode() + b"\0" + src.read_bytes() + b"\0")
        return h.hexdigest()[:32]

    def materialize(self, into: Path) -> None:
        for src, arcname in self.files:
            dest = into / arcname
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(src.read_bytes())


def _recipe_dir(name: str) -> list[tuple[Path, str]]:
    return [(p, p.name) for p in sorted((IMAGES / name).iterdir()) if p.is_file()]


def base_context() -> Context:
    return Context(tuple(_recipe_dir("base")))


def python_context() -> Context:
    files = _recipe_dir("python")
    runner = REPO / "kernels" / "runner"
    files += [(p, f"opt/kraken/{p.relative_to(REPO)}") for p in sorted(runner.rglob("*.py"))]
    files += [(REPO / rel, f"opt/kraken/{rel}") for rel in RUNNER_SOURCES]
    return Context(tuple(files))


# ---- docker / subprocess helpers -------------------------------------------------


def _run(cmd: Sequence[str], what: str, *, verbose: bool, stdin: str | None = None,
         env: dict[str, str] | None = None) -> str:
    """Run ``cmd``; return its stdout, or raise BuildError naming ``what``."""
    out = None if verbose else subprocess.PIPE
    try:
        proc = subprocess.run(list(cmd), input=stdin, text=True, stdout=out, stderr=out,
                              env=env, check=False)
    except FileNotFoundError:
        raise BuildError(f"{what}: command not found: {cmd[0]}") from None
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout or "").splitlines() if ln.strip()]
        tail = f": {lines[-1].strip()}" if lines else ""
        raise BuildError(f"{what} failed (exit {proc.returncode}){tail}")
    return proc.stdout or ""


def image_hash(image: str) -> str | None:
    """The recipe hash label of a local image, or None if the image is absent."""
    proc = subprocess.run(
        ["docker", "image", "inspect", "--format",
         f'{{{{ index .Config.Labels "{HASH_LABEL}" }}}}', image],
        capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return None
    return proc.stdout.strip() or ""


def _progress(msg: str) -> None:
    print(f"kernels.build: {msg}", flush=True)


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    """Serialize builders running at once on this machine (e.g. two test sessions)."""
    path = Path(tempfile.gettempdir()) / "kraken-kernels-build.lock"
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ---- the two images ---------------------------------------------------------------


def _read_list(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text().splitlines()
            if ln.strip() and not ln.lstrip().startswith("#")]


def _mmdebstrap_cmd(rootfs: Path, one_line: Sequence[str], use_stdin: bool) -> list[str]:
    cmd = ["mmdebstrap", "--variant=minbase", "--mode=auto", "--format=tar",
           "--include=" + ",".join(_read_list(IMAGES / "base" / "packages.txt")),
           "--aptopt=Acquire::Languages \"none\"",
           "--customize-hook=rm -rf \"$1\"/var/lib/apt/lists/* \"$1\"/var/cache/apt/*"]
    for pattern in _read_list(IMAGES / "base" / "dpkg-excludes.txt"):
        kind = "path-include" if pattern.startswith("+") else "path-exclude"
        cmd.append(f"--dpkgopt={kind}={pattern.lstrip('+')}")
    cmd += [SUITE, str(rootfs)]
    cmd += (["-"] if use_stdin else []) + list(one_line)
    return cmd


def build_base(recipe_hash: str, *, verbose: bool) -> None:
    sources = read_host_sources()
    if sources.empty:
        raise BuildError("no enabled apt sources in /etc/apt; cannot make the base rootfs")
    with tempfile.TemporaryDirectory(prefix="kraken-base-") as tmp:
        rootfs = Path(tmp) / "rootfs.tar"
        _progress(f"base: mmdebstrap {SUITE} from the host's apt sources "
                  "(a few minutes) ...")
        started = time.monotonic()
        cmd = _mmdebstrap_cmd(rootfs, sources.one_line, bool(sources.deb822))
        _run(cmd, "mmdebstrap", verbose=verbose, stdin=sources.deb822 or None)
        size_mb = rootfs.stat().st_size / 1e6
        _progress(f"base: rootfs {size_mb:.0f} MB in {time.monotonic() - started:.0f}s; "
                  f"docker import as {BASE_IMAGE}")
        changes = _read_list(IMAGES / "base" / "image.conf")
        changes.append(f"LABEL {HASH_LABEL}={recipe_hash}")
        cmd = ["docker", "import"]
        for change in changes:
            cmd += ["--change", change]
        _run(cmd + [str(rootfs), BASE_IMAGE], "docker import", verbose=verbose)


def build_python(context: Context, recipe_hash: str, *, verbose: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="kraken-python-") as tmp:
        context.materialize(Path(tmp))
        _progress(f"python: docker build {', '.join(PYTHON_TAGS)} (no network)")
        cmd = ["docker", "build", "--network=none", "--label", f"{HASH_LABEL}={recipe_hash}"]
        for tag in PYTHON_TAGS:
            cmd += ["--tag", tag]
        env = dict(os.environ, DOCKER_BUILDKIT="0")
        _run(cmd + [tmp], "docker build", verbose=verbose, env=env)


def ensure_base(*, force: bool, verbose: bool) -> str:
    """Build the base image unless it is current; return its recipe hash."""
    want = base_context().digest()
    if not force and image_hash(BASE_IMAGE) == want:
        _progress(f"base: {BASE_IMAGE} is current ({want[:12]}), skipped")
        return want
    build_base(want, verbose=verbose)
    _progress(f"base: built {BASE_IMAGE} ({want[:12]})")
    return want


def ensure_python(*, force: bool, force_base: bool, verbose: bool) -> str:
    """Build the python image (and its base) unless current; return its recipe hash."""
    base_hash = ensure_base(force=force_base, verbose=verbose)
    context = python_context()
    want = context.digest(base_hash)
    if not force and image_hash(PYTHON_IMAGE) == want:
        _progress(f"python: {PYTHON_IMAGE} is current ({want[:12]}), skipped")
        return want
    build_python(context, want, verbose=verbose)
    _progress(f"python: built {', '.join(PYTHON_TAGS)} ({want[:12]})")
    return want


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kernels.build", description=__doc__
                                     and __doc__.splitlines()[0])
    parser.add_argument("target", nargs="?", default="python",
                        choices=("python", "base", "all"))
    parser.add_argument("--force", action="store_true", help="rebuild even if current")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show the output of mmdebstrap and docker")
    args = parser.parse_args(argv)
    try:
        with _build_lock():
            if args.target == "base":
                ensure_base(force=args.force, verbose=args.verbose)
            else:
                ensure_python(force=args.force, force_base=args.force and args.target == "all",
                              verbose=args.verbose)
    except BuildError as e:
        print(f"kernels.build: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("kernels.build: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
