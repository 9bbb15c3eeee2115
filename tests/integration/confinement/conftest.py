"""Attacks on file confinement by a real session: the manager integration harness
(real app, PostgreSQL, Redis) with a REAL agent joined to it (real Docker, the
kraken/python image), so sessions are created, mount folders and run code exactly as
users' do. Inside a session, :data:`SWAP` exchanges a directory with a symlink to a
host directory in a tight ``renameat2(RENAME_EXCHANGE)`` loop."""
from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent.config import AgentConfig
from agent.docker_backend import DockerBackend
from agent.server import Agent
from manager.api.keys import REGISTRY
from manager.config import ManagerConfig
from tests.integration.agent.harness import remove_containers, require_docker_image
from tests.integration.manager.conftest import (  # noqa: F401  (fixtures)
    Harness,
    harness,
    make_manager_config,
    mgr_db_url,
)
from tests.integration.vfolders.conftest import download, folder_dir, upload  # noqa: F401

ATTACK_SECONDS = 10.0
SECRET = "host-secret-" + uuid.uuid4().hex

# argv: directory, symlink target on the host, seconds, files to keep in the real dir
SWAP = r"""
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
os.chdir(sys.argv[1])
keep = sys.argv[4:]
os.makedirs("p", exist_ok=True)
if not os.path.lexists("q"):
    os.symlink(sys.argv[2], "q")
end = time.time() + float(sys.argv[3])
n = 0
while time.time() < end:
    if libc.renameat2(-100, b"p", -100, b"q", 2) != 0:
        raise SystemExit("renameat2: errno %d" % ctypes.get_errno())
    n += 1
    real = "q" if os.path.islink("p") else "p"
    for name in keep:
        if not os.path.exists(os.path.join(real, name)):
            with open(os.path.join(real, name), "w") as f:
                f.write("harmless")
    if n == 1:
        open(".swapping", "w").close()
"""


@pytest.fixture
def mgr_config(mgr_db_url: str, tmp_path: Path) -> ManagerConfig:  # noqa: F811
    config = make_manager_config(mgr_db_url, tmp_path, vfolders={
        "root": str(tmp_path / "vfolders"), "max_size": "1g", "max_files": 1000})
    return config.model_copy(update={
        "link": config.link.model_copy(update={"create_timeout": 90.0,
                                               "request_timeout": 30.0}),
        "exec": config.exec.model_copy(update={"timeout": 30.0})})


@pytest.fixture
async def cluster(harness: Harness, tmp_path: Path) -> AsyncIterator[Harness]:  # noqa: F811
    """The harness with one real agent joined; its containers removed afterwards."""
    require_docker_image()
    endpoint = harness.app[REGISTRY].link.endpoint  # type: ignore[union-attr]
    agent_id = "conf-agent-" + uuid.uuid4().hex[:8]
    cfg = AgentConfig.model_validate({
        "agent_id": agent_id, "scratch_root": str(tmp_path / "scratch"),
        "manager": {"endpoints": [endpoint], "public_key": harness.server_key.decode(),
                    "join_token": harness.token},
        "runner": {"ready_timeout": 60}})
    agent = Agent(cfg, DockerBackend())
    await agent.start()
    try:
        await _until(lambda: _agent_alive(harness, agent_id), 30, "the agent joined")
        yield harness
    finally:
        with contextlib.suppress(Exception):
            for kernel_id in list(agent.kernels.kernel_ids):
                await agent.kernels.destroy(kernel_id)
        await agent.stop()
        await remove_containers(agent_id)


async def _agent_alive(h: Harness, agent_id: str) -> bool:
    async with h.engine.connect() as conn:
        from sqlalchemy import select

        from manager.db.tables import agents
        row = (await conn.execute(select(agents.c.status).where(agents.c.id == agent_id))
               ).first()
        return row is not None and str(row[0]).upper().endswith("ALIVE")




async def _until(probe: Any, limit: float, what: str) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if await probe():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting until {what}")


class Session:
    """A real session created through the REST API."""

    def __init__(self, h: Harness, kernel_id: str) -> None:
        self.h, self.id = h, kernel_id

    async def run(self, code: str) -> str:
        status, body = await self.h.call("POST", f"/kernel/{self.id}", {
            "mode": "query", "code": code, "runId": uuid.uuid4().hex})
        assert status == 200 and body["result"]["status"] == "finished", body
        return "".join(item[1] for item in body["result"]["console"] if item[0] == "stdout")

    async def start_swap(self, directory: str, target: Path, *keep: str,
                         seconds: float = ATTACK_SECONDS + 20) -> None:
        """Start :data:`SWAP` in the background in ``directory`` (in the container)."""
        args = [directory, str(target), str(seconds), *keep]
        await self.run(
            "import subprocess, sys\n"
            f"subprocess.Popen([sys.executable, '-c', {SWAP!r}, *{args!r}], "
            "start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n")


async def open_session(h: Harness, **config: Any) -> Session:
    status, body = await h.create(token="conf-" + uuid.uuid4().hex[:8], **config)
    assert status == 201, body
    return Session(h, body["kernelId"])


def canary(tmp_path: Path, *names: str) -> Path:
    """A host directory standing in for var/keys: files the attack wants."""
    path = tmp_path / "host-keys"
    path.mkdir()
    for name in names:
        (path / name).write_text(SECRET)
    return path


def assert_untouched(path: Path, *names: str) -> None:
    assert sorted(p.name for p in path.iterdir()) == sorted(names)
    for name in names:
        assert (path / name).read_text() == SECRET


async def wait_swapping(marker: Path) -> None:
    async def seen() -> bool:
        return await asyncio.to_thread(marker.exists)
    await _until(seen, 30, "the swap loop runs in the session")


async def hammer(attempt: Any, seconds: float = ATTACK_SECONDS) -> dict[int, int]:
    """Call ``attempt()`` (returns an HTTP status) until ``seconds`` pass; count each."""
    statuses: dict[int, int] = {}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        status = await attempt()
        statuses[status] = statuses.get(status, 0) + 1
    return statuses
