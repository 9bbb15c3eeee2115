"""Fixtures for end-to-end tests: one cluster per test module, the official client."""
from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from tests.e2e.browser import browser  # noqa: F401  (fixture: headless Chromium)
from tests.e2e.cluster import ROOT, Cluster

CLIENT_VENV = Path(os.environ.get("KRAKEN_CLIENT_VENV", ROOT / "var" / "client-venv"))
PG_URL = os.environ.get("KRAKEN_TEST_PG_URL", "postgresql://kraken:kraken@127.0.0.1:15432/kraken")
REDIS_URL = os.environ.get("KRAKEN_TEST_REDIS_URL", "redis://127.0.0.1:16379/0")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("cluster"), PG_URL, REDIS_URL)
    try:
        await c.start()
        yield c
    finally:
        await c.stop()


Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def bai(cluster: Cluster) -> Run:
    """Run the official `backend.ai` CLI against the cluster."""
    exe = CLIENT_VENV / "bin" / "backend.ai"
    if not exe.exists():
        pytest.fail(f"official client missing at {exe}; run scripts/dev install")

    def run(*args: str, input: str | None = None, timeout: float = 120,
            **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(exe), *args], input=input, capture_output=True, text=True,
                              timeout=timeout, env=cluster.client_env(**env))
    return run


@pytest.fixture
def client_py(cluster: Cluster) -> Run:
    """Run a Python snippet with the official client's SDK (its own venv)."""
    exe = CLIENT_VENV / "bin" / "python"

    def run(code: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(exe), "-c", code], capture_output=True, text=True,
                              timeout=timeout, env=cluster.client_env())
    return run
