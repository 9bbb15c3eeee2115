"""The image builder's pure parts: host apt sources, recipe hashing, the mmdebstrap call."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kernels import build
from kernels.apt_sources import read_host_sources


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_host_sources_skip_disabled_files_and_stanzas(tmp_path: Path) -> None:
    write(tmp_path / "sources.list", "# comment\ndeb http://mirror.example/debian bookworm main\n")
    write(tmp_path / "sources.list.d/debian.sources",
          "Types: deb\nURIs: http://a.example/debian\nSuites: bookworm\nComponents: main\n\n"
          "Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\n"
          "Components: main\nEnabled: no\n")
    write(tmp_path / "sources.list.d/vendor.list.disabled-by-farm", "deb http://gone.example x y\n")
    write(tmp_path / "sources.list.d/vendor.sources.disabled", "Types: deb\nURIs: http://gone\n")
    sources = read_host_sources(tmp_path)
    assert sources.one_line == ("deb http://mirror.example/debian bookworm main",)
    assert "a.example" in sources.deb822
    assert "off.example" not in sources.deb822 and "gone" not in sources.deb822


def test_no_sources_is_empty(tmp_path: Path) -> None:
    assert read_host_sources(tmp_path).empty


def test_mmdebstrap_reads_sources_from_stdin_without_a_mirror(tmp_path: Path) -> None:
    cmd = build._mmdebstrap_cmd(tmp_path / "rootfs.tar", ["deb http://m.example x main"], True)
    assert cmd[0] == "mmdebstrap" and "--variant=minbase" in cmd
    includes = next(a for a in cmd if a.startswith("--include="))
    for pkg in ("python3", "python3-zmq", "python3-msgpack", "tini", "gcc", "make"):
        assert pkg in includes.split("=", 1)[1].split(",")
    assert cmd[-4:] == [build.SUITE, str(tmp_path / "rootfs.tar"), "-",
                        "deb http://m.example x main"]
    assert not any("deb.debian.org" in a for a in cmd)
    assert "--dpkgopt=path-exclude=/usr/share/doc/*" in cmd
    assert "--dpkgopt=path-include=/usr/share/doc/*/copyright" in cmd


def test_recipe_hash_follows_the_files_and_the_parent(tmp_path: Path) -> None:
    a = write(tmp_path / "Dockerfile", "FROM x\n")
    ctx = build.Context(((a, "Dockerfile"),))
    first = ctx.digest("base1")
    assert ctx.digest("base1") == first
    assert ctx.digest("base2") != first
    a.write_text("FROM y\n")
    assert ctx.digest("base1") != first


def test_python_context_carries_the_runner_and_its_wire_modules(tmp_path: Path) -> None:
    ctx = build.python_context()
    names = {arc for _, arc in ctx.files} | {arc for arc, _ in ctx.generated}
    assert "Dockerfile" in names
    assert {"opt/kraken/kernels/runner/server.py", "opt/kraken/kernels/runner/__main__.py",
            "opt/kraken/common/codec.py", "opt/kraken/common/msg_runner.py",
            "opt/kraken/common/__init__.py", "opt/kraken/kernels/__init__.py"} <= names
    assert not any("agent" in n or "manager" in n or "build.py" in n for n in names)
    ctx.materialize(tmp_path)
    assert (tmp_path / "opt/kraken/common/msg_runner.py").is_file()


def test_dockerfile_declares_the_backend_ai_labels() -> None:
    text = dict(build.python_context().generated)["Dockerfile"].decode()
    assert text.splitlines()[1] == f"FROM {build.BASE_IMAGE}"
    for label in ('ai.backend.maxcores="4"', 'ai.backend.maxmem="2g"', 'ai.backend.timeout="0"',
                  'ai.backend.mode="query+pty"', "ai.backend.features=",
                  'ai.backend.kernelspec="1"',
                  'ai.backend.envs.corecount="OPENBLAS_NUM_THREADS,OMP_NUM_THREADS"'):
        assert label in text
    assert "USER work" in text


def test_failed_command_is_one_clear_line() -> None:
    with pytest.raises(build.BuildError, match=r"^probe failed \(exit 3\): boom$"):
        build._run(["bash", "-c", "echo noise; echo boom >&2; exit 3"], "probe", verbose=False)
    with pytest.raises(build.BuildError, match="command not found"):
        build._run(["kraken-no-such-tool"], "probe", verbose=False)


def test_cli_rejects_unknown_target(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build.main(["ruby"])
    assert exc.value.code == 2
    assert "invalid choice: 'ruby'" in capsys.readouterr().err


def test_the_runner_imports_only_what_the_image_carries(tmp_path: Path) -> None:
    """The runner starts from the build context alone (no repository on its path)."""
    build.python_context().materialize(tmp_path)
    code = "import kernels.runner.server, kernels.runner.outbox, kernels.runner.media"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, env={"PYTHONPATH": str(tmp_path / "opt/kraken")},
                         timeout=60, check=False)
    assert out.returncode == 0, out.stderr
