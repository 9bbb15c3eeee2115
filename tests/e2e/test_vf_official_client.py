"""Virtual folders through the official backend.ai-client==18.12.3 CLI, unmodified:
create → upload → a session mounting the folder reads the file → download → delete;
a folder shared read-only cannot be written from inside a session."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.e2e.cluster import Cluster
from tests.e2e.conftest import CLIENT_VENV

pytestmark = pytest.mark.e2e


def _bai(cluster: Cluster, cwd: Path, *args: str, keys: tuple[str, str] | None = None,
         input: str | None = None) -> subprocess.CompletedProcess[str]:
    env = cluster.client_env()
    if keys is not None:
        env.update(BACKEND_ACCESS_KEY=keys[0], BACKEND_SECRET_KEY=keys[1])
    return subprocess.run([str(CLIENT_VENV / "bin" / "backend.ai"), *args], cwd=cwd,
                          input=input, capture_output=True, text=True, timeout=120, env=env)


def _second_keypair(cluster: Cluster, user_id: str) -> tuple[str, str]:
    out = cluster.manager_cli("keypair", "create", "-c", str(cluster.workdir / "manager.toml"),
                              "--user-id", user_id, "--shell")
    env = dict(line.removeprefix("export ").split("=", 1)
               for line in out.splitlines() if line.startswith("export "))
    return env["BACKEND_ACCESS_KEY"].strip("'\""), env["BACKEND_SECRET_KEY"].strip("'\"")


def test_vfolder_roundtrip(cluster: Cluster, tmp_path: Path) -> None:
    up, down = tmp_path / "up", tmp_path / "down"
    up.mkdir()
    down.mkdir()
    (up / "f.txt").write_text("hello from a vfolder")
    out = _bai(cluster, up, "vfolder", "create", "e2edata")
    assert out.returncode == 0 and 'Virtual folder "e2edata" is created' in out.stdout, out
    out = _bai(cluster, up, "vfolder", "upload", "e2edata", "f.txt")
    assert out.returncode == 0, out.stderr
    out = _bai(cluster, up, "vfolder", "list")
    assert "e2edata" in out.stdout
    out = _bai(cluster, up, "vfolder", "info", "e2edata")
    assert "Number of files: 1" in out.stdout, out
    out = _bai(cluster, up, "vfolder", "ls", "e2edata")
    assert "f.txt" in out.stdout, out
    code = ("print(open('/home/work/e2edata/f.txt').read()); "
            "open('/home/work/e2edata/made.txt', 'w').write('made in session')")
    out = _bai(cluster, up, "run", "--rm", "-m", "e2edata", "python", "-c", code)
    assert out.returncode == 0, out.stderr
    assert "hello from a vfolder" in out.stdout
    out = _bai(cluster, down, "vfolder", "download", "e2edata", "made.txt", "f.txt")
    assert out.returncode == 0, out.stderr
    assert (down / "made.txt").read_text() == "made in session"  # data survives the session
    assert (down / "f.txt").read_text() == "hello from a vfolder"
    out = _bai(cluster, up, "vfolder", "delete", "e2edata")
    assert out.returncode == 0, out.stderr
    assert "e2edata" not in _bai(cluster, up, "vfolder", "list").stdout
    out = _bai(cluster, up, "run", "--rm", "-m", "e2edata", "python", "-c", "print(1)")
    assert "404" in out.stderr and "No such virtual folder" in out.stderr
    assert cluster.containers() == []


def test_ro_share_is_read_only_in_sessions(cluster: Cluster, tmp_path: Path) -> None:
    bob = _second_keypair(cluster, "bob@e2e")
    (tmp_path / "r.txt").write_text("read me")
    assert _bai(cluster, tmp_path, "vfolder", "create", "e2eshared").returncode == 0
    assert _bai(cluster, tmp_path, "vfolder", "upload", "e2eshared", "r.txt").returncode == 0
    out = _bai(cluster, tmp_path, "vfolder", "invite", "-p", "ro", "e2eshared", "bob@e2e")
    assert "bob@e2e" in out.stdout, out
    out = _bai(cluster, tmp_path, "vfolder", "invitations", keys=bob, input="1\na\n")
    assert out.returncode == 0 and "granted" in out.stdout, out
    code = ("print(open('/home/work/e2eshared/r.txt').read())\n"
            "try:\n    open('/home/work/e2eshared/w.txt', 'w')\n"
            "except OSError as e:\n    print('refused', e.errno)\n")
    out = _bai(cluster, tmp_path, "run", "--rm", "-m", "e2eshared", "python", "-c", code,
               keys=bob)
    assert out.returncode == 0, out.stderr
    assert "read me" in out.stdout and "refused 30" in out.stdout  # EROFS
    listing = _bai(cluster, tmp_path, "vfolder", "ls", "e2eshared")
    assert "w.txt" not in listing.stdout
    assert _bai(cluster, tmp_path, "vfolder", "delete", "e2eshared").returncode == 0
