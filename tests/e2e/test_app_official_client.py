"""``backend.ai app <session> jupyter`` of the official client: Jupyter on localhost.

The client listens on 127.0.0.1 and pipes each TCP connection through a WebSocket to
``/stream/kernel/:id/httpproxy?app=jupyter``; the manager relays it to the agent, whose
"proxy" stream reaches the session's Jupyter service. The client needs the
``client_compat`` shim on Python >= 3.10 (see its docstring).

Needs the manager's proxy endpoints (issue 9, ``manager-streams``) to pass.
"""
from __future__ import annotations

import asyncio
import os
import selectors
import signal
import socket
import subprocess
from collections.abc import Iterator

import pytest

from tests.e2e.cluster import ROOT, Cluster, free_port
from tests.e2e.conftest import CLIENT_VENV, Run
from tests.jupyter import visit_jupyter

pytestmark = pytest.mark.e2e

SHIM = ROOT / "tests" / "e2e" / "client_compat"
READY = """
import asyncio
from ai.backend.client.cli.app import ProxyRunner
async def main():
    runner = ProxyRunner(None, "sess", "jupyter", "http", "127.0.0.1", 0)
    await runner.ready()
    print("listening")
    await runner.close()
asyncio.run(main())
"""


def client_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLIENT_VENV / "bin" / "python"), "-c", code], text=True,
                          capture_output=True, timeout=60, env=dict(os.environ, **env))


def test_the_client_needs_the_shim_on_this_python() -> None:
    bare = client_python(READY)
    assert "unexpected keyword argument 'loop'" in bare.stderr  # else: drop the shim
    shimmed = client_python(READY, PYTHONPATH=str(SHIM))
    assert shimmed.returncode == 0 and shimmed.stdout == "listening\n", shimmed.stderr


def wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float = 60) -> str:
    """The client's output up to the line holding ``needle``."""
    assert proc.stdout is not None
    seen = ""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while needle not in seen:
            if not sel.select(timeout) or proc.poll() is not None:
                raise AssertionError(f"`backend.ai app` said: {seen!r} (exit {proc.poll()})")
            line = proc.stdout.readline()
            seen += line
    return seen


@pytest.fixture
def session(bai: Run) -> Iterator[str]:
    name = "e2e-jupyter"
    made = bai("run", "-t", name, "python", "-c", "print('up')")
    assert made.returncode == 0 and "up" in made.stdout, made.stderr
    yield name
    bai("terminate", name)


def test_app_gives_a_working_jupyter_on_localhost(cluster: Cluster, session: str) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [str(CLIENT_VENV / "bin" / "backend.ai"), "app", session, "jupyter", "-p", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=cluster.client_env(PYTHONPATH=str(SHIM), PYTHONUNBUFFERED="1"))
    try:
        said = wait_for_line(proc, "is available at")
        assert f"http://127.0.0.1:{port}" in said
        visit = asyncio.run(visit_jupyter(f"http://127.0.0.1:{port}"))
        assert visit.tree_status == 200
        assert visit.api_version.startswith("6.")
        assert visit.result == "42"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert proc.returncode == 0, out
    assert "has terminated" in out


def test_an_unknown_app_is_refused(cluster: Cluster, session: str) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [str(CLIENT_VENV / "bin" / "backend.ai"), "app", session, "vscode", "-p", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=cluster.client_env(PYTHONPATH=str(SHIM), PYTHONUNBUFFERED="1"))
    try:
        wait_for_line(proc, "is available at")
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            conn.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            try:
                answer = conn.recv(4096)
            except TimeoutError:  # the client may leave the refused connection open
                answer = b""
        assert b"200 OK" not in answer
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    # the WebSocket upgrade was refused with the manager's 404 (service-not-found)
    assert "404" in out, out

