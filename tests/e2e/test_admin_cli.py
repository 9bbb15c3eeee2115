"""The official client's admin commands (backend.ai admin …, backend.ai ps), unmodified,
against a whole cluster: each exits 0 and prints the cluster's real data."""
from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.e2e.cluster import Cluster
from tests.e2e.conftest import CLIENT_VENV, Run

pytestmark = pytest.mark.e2e

TOKEN = "gql-e2e-cli"


@pytest.fixture(scope="module")
def running(cluster: Cluster) -> Iterator[str]:
    """A RUNNING session made through the official client; its kernel UUID."""
    exe = str(CLIENT_VENV / "bin" / "backend.ai")
    out = subprocess.run([exe, "run", "-t", TOKEN, "python", "-c", "x=1"], capture_output=True,
                         text=True, timeout=180, env=cluster.client_env(), check=False)
    assert out.returncode == 0, out.stderr
    kernel_id = cluster.sql("SELECT id::text FROM kernels WHERE session_name = $1 "
                            "AND status = 'RUNNING'", TOKEN)
    assert kernel_id, "the session is not RUNNING"
    yield str(kernel_id)
    subprocess.run([exe, "terminate", TOKEN], capture_output=True, timeout=120,
                   env=cluster.client_env(), check=False)


def _ok(result: object) -> str:
    assert result.returncode == 0, (result.stdout, result.stderr)  # type: ignore[attr-defined]
    return result.stdout  # type: ignore[attr-defined,no-any-return]


def test_admin_agents_and_agent(bai: Run, cluster: Cluster) -> None:
    listing = _ok(bai("admin", "agents"))
    assert cluster.agent_id in listing and "ALIVE" in listing
    one = _ok(bai("admin", "agent", "-i", cluster.agent_id))
    assert cluster.agent_id in one and "Total CPU Cores" in one


def test_admin_images(bai: Run, cluster: Cluster) -> None:
    name = str(cluster.sql("SELECT name FROM images LIMIT 1"))
    out = _ok(bai("admin", "images"))
    assert name.rsplit(":", 1)[0] in out


def test_admin_keypairs_and_add(bai: Run, cluster: Cluster) -> None:
    added = _ok(bai("admin", "keypairs", "add", "gql-e2e-user", "-c", "3"))
    access = added.split("Access Key:")[1].split()[0]
    assert "Secret Key:" in added
    listing = _ok(bai("admin", "keypairs"))
    assert cluster.access_key in listing and access in listing
    only = _ok(bai("admin", "keypairs", "-u", "gql-e2e-user"))
    assert access in only and cluster.access_key not in only
    assert cluster.sql("SELECT concurrency_limit FROM keypairs WHERE access_key = $1",
                       access) == 3


def test_admin_sessions_session_and_ps(bai: Run, running: str) -> None:
    assert TOKEN in _ok(bai("admin", "sessions"))
    assert TOKEN in _ok(bai("ps"))
    assert TOKEN in _ok(bai("admin", "sessions", "--status", "ALL"))
    detail = _ok(bai("admin", "session", TOKEN))
    assert "Session ID: " + TOKEN in detail and "Status: RUNNING" in detail


def test_admin_vfolders(bai: Run, cluster: Cluster) -> None:
    cluster.sql("INSERT INTO vfolders (id, host, name, owner) VALUES "
                "(gen_random_uuid(), 'local', 'gql-e2e-folder', $1) RETURNING 1",
                cluster.access_key)
    out = _ok(bai("admin", "vfolders"))
    assert "gql-e2e-folder" in out and "Max Files" in out
