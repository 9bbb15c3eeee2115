"""Kernel files, console logs and idle reaping on a real agent (real Docker, real link)."""
from __future__ import annotations

import asyncio
import io
import os
import tarfile
import uuid

import pytest

from common.msg_agent import (
    DownloadFiles,
    ErrorReply,
    Execute,
    ExecuteResult,
    FileList,
    FilesArchive,
    FilesUploaded,
    GetLogs,
    KernelCreated,
    KernelLogs,
    ListFiles,
    UploadFiles,
)
from jail.policy import KERNEL_GID, KERNEL_UID
from tests.integration.agent.harness import AgentHarness, FakeManager

pytestmark = pytest.mark.integration


async def _kernel(manager: FakeManager, harness: AgentHarness, **over: object) -> str:
    await harness.start()
    await manager.next_join()
    reply = await manager.call(harness.create_msg(**over))
    assert isinstance(reply, KernelCreated), reply
    return reply.kernel_id


async def _run(manager: FakeManager, kid: str, code: str) -> str:
    reply = await manager.call(Execute(kernel_id=kid, run_id=uuid.uuid4().hex, mode="query",
                                       code=code, flush_timeout=10.0))
    assert isinstance(reply, ExecuteResult) and reply.status == "finished", reply
    return "".join(d for k, d in reply.console if k == "stdout")


async def test_upload_list_download_logs(manager: FakeManager, harness: AgentHarness) -> None:
    kid = await _kernel(manager, harness)
    up = await manager.call(UploadFiles(kernel_id=kid, files=[
        {"path": "src/deep/a.txt", "data": b"alpha\n"},
        {"path": "/home/work/b.txt", "data": b"beta"}]))
    assert isinstance(up, FilesUploaded) and up.paths == ["src/deep/a.txt", "b.txt"]
    out = await _run(manager, kid, "import os; p='/home/work/src/deep/a.txt'; "
                     "st=os.stat(p); print(open(p).read().strip(), st.st_uid, st.st_gid, "
                     "os.stat('/home/work/src').st_uid)")
    assert out.split() == ["alpha", str(KERNEL_UID), str(KERNEL_GID), str(KERNEL_UID)]
    listing = await manager.call(ListFiles(kernel_id=kid, path="/home/work/src/deep"))
    assert isinstance(listing, FileList) and listing.abspath == "/home/work/src/deep"
    assert [(f["filename"], f["size"], f["mode"]) for f in listing.files] == [
        ("a.txt", 6, "-rw-r--r--")]
    arch = await manager.call(DownloadFiles(kernel_id=kid, files=["src/deep/a.txt", "b.txt"]))
    assert isinstance(arch, FilesArchive) and len(arch.archives) == 2
    with tarfile.open(fileobj=io.BytesIO(arch.archives[0])) as tar:
        member = tar.getmember("a.txt")
        assert tar.extractfile(member).read() == b"alpha\n"  # type: ignore[union-attr]
    await _run(manager, kid, "import sys; print('to-the-log', file=sys.stderr, flush=True)")
    logs = await manager.call(GetLogs(kernel_id=kid))
    assert isinstance(logs, KernelLogs) and isinstance(logs.logs, str)


async def test_escapes_are_refused(manager: FakeManager, harness: AgentHarness) -> None:
    kid = await _kernel(manager, harness)
    await _run(manager, kid, "import os; os.symlink('/etc', '/home/work/etc'); "
               "os.symlink('/etc/passwd', '/home/work/pw'); os.mkdir('/home/work/d')")
    bad_uploads = ["../x", "/etc/x", "a/../../x", "etc/evil", "pw", "", "/home/work"]
    for path in bad_uploads:
        reply = await manager.call(UploadFiles(kernel_id=kid,
                                               files=[{"path": path, "data": b"x"}]))
        assert isinstance(reply, ErrorReply), (path, reply)
        assert reply.error_type in ("forbidden", "invalid-api-params"), (path, reply)
    assert not await asyncio.to_thread(os.path.exists, "/etc/evil")
    for path in ["etc", "..", "/etc", "pw"]:
        reply = await manager.call(ListFiles(kernel_id=kid, path=path))
        assert isinstance(reply, ErrorReply), (path, reply)
    for files in (["pw"], ["etc/passwd"], ["../../etc/passwd"], ["d"], ["missing"], [],
                  ["a"] * 6):
        reply = await manager.call(DownloadFiles(kernel_id=kid, files=files))
        assert isinstance(reply, ErrorReply), (files, reply)
    too_many = [{"path": f"f{i}", "data": b""} for i in range(21)]
    reply = await manager.call(UploadFiles(kernel_id=kid, files=too_many))
    assert isinstance(reply, ErrorReply) and reply.error_type == "invalid-api-params"
    big = [{"path": "big", "data": b"x" * ((1 << 20) + 1)}]
    reply = await manager.call(UploadFiles(kernel_id=kid, files=big))
    assert isinstance(reply, ErrorReply)
    listing = await manager.call(ListFiles(kernel_id=kid, path="."))
    assert isinstance(listing, FileList)
    assert sorted(f["filename"] for f in listing.files) == ["d", "etc", "pw"]
    unknown = await manager.call(ListFiles(kernel_id=str(uuid.uuid4()), path="."))
    assert isinstance(unknown, ErrorReply) and unknown.error_type == "kernel-not-found"


async def test_idle_kernel_is_reaped(manager: FakeManager, harness: AgentHarness) -> None:
    kid = await _kernel(manager, harness, idle_timeout=3.0)
    (info,) = await harness.containers()
    assert info["Config"]["Labels"]["kraken.idle-timeout"] == "3.0"
    for _ in range(3):  # activity keeps it alive past its timeout
        await asyncio.sleep(1.5)
        await manager.call(UploadFiles(kernel_id=kid, files=[{"path": "t", "data": b"1"}]))
    event = await asyncio.wait_for(manager.events.get(), 10)
    assert event.kernel_id == kid and event.reason == "idle-timeout"
    assert await harness.containers() == []
