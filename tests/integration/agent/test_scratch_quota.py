"""Each kernel's /home/work is a loop-mounted filesystem of bounded size (real Docker, real
mounts): a session that fills it gets ENOSPC, never the host; destroy leaves no mount,
image or loop device; a restarted agent keeps (or mounts again) the files."""
from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import scratch as scratch_mod
from agent.config import AgentConfig
from agent.scratch import ScratchStore
from common.errors import KernelCreationFailed
from common.msg_agent import DestroyKernel, Execute, ExecuteResult, KernelCreated, KernelDestroyed
from jail.policy import KERNEL_GID, KERNEL_UID
from tests.integration.agent.harness import (
    IMAGE,
    AgentHarness,
    FakeManager,
    loop_devices,
)
from tests.scratch_mounts import unmount_scratch

pytestmark = pytest.mark.integration
LIMIT = "64m"


@pytest.fixture(autouse=True)
def _root_with_loop_devices() -> None:
    if os.geteuid() != 0 or not os.path.exists("/dev/loop-control"):
        pytest.skip("loop-mounted scratch needs root and loop devices")


async def run(manager: FakeManager, kid: str, code: str) -> ExecuteResult:
    reply = await manager.call(Execute(kernel_id=kid, run_id=uuid.uuid4().hex, mode="query",
                                       code=code, flush_timeout=60.0))
    assert isinstance(reply, ExecuteResult) and reply.status == "finished", reply
    return reply


def text(res: ExecuteResult) -> str:
    return "".join(str(d) for _, d in res.console)


async def start(manager: FakeManager, harness: AgentHarness) -> None:
    await harness.start(scratch={"default_size": LIMIT})
    await manager.next_join()


async def create(manager: FakeManager, harness: AgentHarness, **over: object) -> str:
    reply = await manager.call(harness.create_msg(**over))
    assert isinstance(reply, KernelCreated), reply
    return reply.kernel_id


def mounted(path: Path) -> bool:
    return os.path.ismount(path)


def loops_under(root: Path) -> str:
    out = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    return "".join(line for line in out.splitlines(True) if str(root) in line)


async def test_full_scratch_gives_enospc_and_leaves_the_host_alone(
        manager: FakeManager, harness: AgentHarness) -> None:
    await start(manager, harness)
    kid = await create(manager, harness)
    home, image = harness.scratch_root / kid, harness.scratch_root / f"{kid}.img"
    assert mounted(home) and home.stat().st_dev != harness.scratch_root.stat().st_dev
    assert (home.stat().st_uid, home.stat().st_gid, home.stat().st_mode & 0o777) == (
        KERNEL_UID, KERNEL_GID, 0o700)
    assert image.stat().st_mode & 0o777 == 0o600 and len(loop_devices(image)) == 1
    res = await run(manager, kid, "import os\nprint(sorted(os.listdir('/home/work')))\n"
                    "with open('/home/work/big', 'wb') as f:\n"
                    "    for _ in range(200):\n"
                    "        f.write(os.urandom(1 << 20))\n")
    out = text(res)
    assert "[]" in out  # no lost+found in the user's home
    assert "OSError: [Errno 28] No space left on device" in out, out
    assert image.stat().st_blocks * 512 <= (64 << 20)  # the host holds at most the image
    res = await run(manager, kid, "import os\nos.remove('/home/work/big')\n"
                    "open('/home/work/again', 'wb').write(os.urandom(16 << 20))\n"
                    "print('wrote', os.path.getsize('/home/work/again'))")
    assert res.exit_code == 0 and f"wrote {16 << 20}" in text(res)
    gone = await manager.call(DestroyKernel(kernel_id=kid, reason="user-requested"))
    assert isinstance(gone, KernelDestroyed) and gone.stats["io_cur_scratch_size"] >= 16 << 20
    assert not mounted(home) and not home.exists() and not image.exists()
    assert loops_under(harness.scratch_root) == ""


async def test_image_label_sets_the_size_capped_by_the_maximum(
        manager: FakeManager, harness: AgentHarness) -> None:
    tag = "kraken-test/scratch-label:" + uuid.uuid4().hex[:8]
    subprocess.run(["docker", "build", "-q", "-t", tag, "-"], check=True, capture_output=True,
                   input=f'FROM {IMAGE}\nLABEL kraken.scratch.size="512m"\n'.encode())
    try:
        await harness.start(scratch={"default_size": "32m", "max_size": "96m"})
        await manager.next_join()
        labelled = await create(manager, harness, image=tag)
        plain = await create(manager, harness)
        size = "import os; s = os.statvfs('/home/work'); print('MiB', s.f_blocks * s.f_frsize >> 20)"
        mib = [int(text(await run(manager, k, size)).split()[-1]) for k in (labelled, plain)]
        assert 80 <= mib[0] <= 96 and 24 <= mib[1] <= 32, mib  # capped at 96m; default 32m
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)


async def test_restarted_agent_keeps_the_files_and_mounts_a_lost_mount_again(
        manager: FakeManager, harness: AgentHarness, other_agents_scratch: Path) -> None:
    await start(manager, harness)
    kid = await create(manager, harness)
    home, image = harness.scratch_root / kid, harness.scratch_root / f"{kid}.img"
    await run(manager, kid, "open('/home/work/keep.txt', 'w').write('kept')")
    await harness.stop(harness.agents[0])
    await start(manager, harness)  # the mount outlived the agent: used as it is
    assert text(await run(manager, kid, "print(open('keep.txt').read())")) == "kept\n"
    await harness.stop(harness.agents[0])
    subprocess.run(["umount", "-l", str(home)], check=True)  # as after a host reboot
    assert not mounted(home)
    await start(manager, harness)
    assert mounted(home) and (home / "keep.txt").read_text() == "kept"
    await run(manager, kid, "open('/home/work/after.txt', 'w').write('same fs')")
    assert (home / "after.txt").read_text() == "same fs"  # the session's fs, not a copy
    assert len(loop_devices(image)) == 1  # the loop device was reused, not doubled
    await manager.call(DestroyKernel(kernel_id=kid, reason="user-requested"))
    assert not image.exists() and loops_under(harness.scratch_root) == ""
    assert (other_agents_scratch / "theirs.txt").read_text() == "theirs"


@pytest.fixture
def other_agents_scratch(tmp_path: Path) -> Iterator[Path]:
    """A mounted scratch of another agent (its own scratch root) on the same host."""
    store = ScratchStore(_cfg(tmp_path / "other-agent"))
    kid = str(uuid.uuid4())
    path = store.create(kid, 16 << 20)
    (path / "theirs.txt").write_text("theirs")
    try:
        yield path
        assert os.path.ismount(path)
    finally:
        store.remove(kid)


def _cfg(root: Path, **scratch: object) -> AgentConfig:
    return AgentConfig.model_validate({
        "manager": {"endpoints": ["tcp://127.0.0.1:1"], "join_token": "t"},
        "scratch_root": str(root), "scratch": scratch})


def test_a_failed_mount_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scratch_mod, "MOUNT_OPTIONS", "loop,no-such-option")
    store = ScratchStore(_cfg(tmp_path / "s"))
    with pytest.raises(KernelCreationFailed, match="mount failed"):
        store.create(str(uuid.uuid4()), 16 << 20)
    assert list((tmp_path / "s").iterdir()) == [] and loops_under(tmp_path) == ""
    unmount_scratch(tmp_path / "s")


def test_quota_none_is_a_plain_directory(tmp_path: Path) -> None:
    store = ScratchStore(_cfg(tmp_path / "s", quota="none"))
    kid = str(uuid.uuid4())
    path = store.create(kid, 16 << 20)
    assert not os.path.ismount(path) and not store.image(kid).exists()
    assert (path.stat().st_uid, path.stat().st_mode & 0o777) == (KERNEL_UID, 0o700)
    store.remove(kid)
    assert not path.exists()


def test_ensure_mounts_a_lost_mount_again_and_refuses_a_missing_image(tmp_path: Path) -> None:
    store = ScratchStore(_cfg(tmp_path / "s"))
    kid = str(uuid.uuid4())
    path = store.create(kid, 16 << 20)
    (path / "f").write_text("x")
    try:
        assert store.ensure(kid) == path  # mounted: used as it is
        subprocess.run(["umount", str(path)], check=True)
        assert store.ensure(kid) == path and (path / "f").read_text() == "x"
        subprocess.run(["umount", str(path)], check=True)
        store.image(kid).unlink()
        with pytest.raises(KernelCreationFailed, match="image of kernel .* is missing"):
            store.ensure(kid)
    finally:
        store.remove(kid)
    assert list((tmp_path / "s").iterdir()) == [] and loops_under(tmp_path) == ""
