"""Escape attempts from inside a real jailed kernel container, run as user code."""
from __future__ import annotations

import platform
import pwd
import textwrap
import uuid

import aiodocker
import pytest

from common.msg_agent import Execute, ExecuteResult, KernelCreated
from jail.policy import KERNEL_GID, KERNEL_UID
from tests.integration.agent.harness import AgentHarness, FakeManager

pytestmark = pytest.mark.integration
Jailed = tuple[FakeManager, AgentHarness, list[KernelCreated]]
SYSCALLS = {  # syscall numbers of the host ABI
    "x86_64": {"io_uring_setup": 425, "kcmp": 312, "userfaultfd": 323, "clone3": 435,
               "personality": 135},
    "aarch64": {"io_uring_setup": 425, "kcmp": 272, "userfaultfd": 282, "clone3": 435,
                "personality": 92},
}


async def run(manager: FakeManager, kernel: KernelCreated, code: str) -> str:
    reply = await manager.call(Execute(kernel_id=kernel.kernel_id, run_id=uuid.uuid4().hex,
                                       mode="query", code=textwrap.dedent(code),
                                       flush_timeout=30.0))
    assert isinstance(reply, ExecuteResult) and reply.status == "finished", reply
    return "".join(str(d) for _, d in reply.console)


async def test_user_is_not_root_and_cannot_become_root(jailed: Jailed) -> None:
    manager, _, (a, _b) = jailed
    out = await run(manager, a, """
        import os, subprocess
        print("ids", os.getuid(), os.geteuid(), os.getgid())
        try:
            os.setuid(0); print("setuid ok")
        except PermissionError:
            print("setuid refused")
        su = subprocess.run(["su", "-c", "id -u"], input="", capture_output=True, text=True)
        print("su", su.returncode, su.stdout.strip())
        print("caps", open("/proc/self/status").read().split("CapEff:")[1].split()[0])
        print("nnp", open("/proc/self/status").read().split("NoNewPrivs:")[1].split()[0])
    """)
    assert f"ids {KERNEL_UID} {KERNEL_UID} {KERNEL_GID}" in out and "setuid refused" in out
    assert "su 0" not in out and "su 1 0" not in out
    assert "caps 0000000000000000" in out and "nnp 1" in out


async def test_mount_ptrace_unshare_are_refused(jailed: Jailed) -> None:
    manager, _, (a, _b) = jailed
    out = await run(manager, a, """
        import ctypes, os, subprocess
        libc = ctypes.CDLL(None, use_errno=True)
        print("ptrace", libc.ptrace(0, 0, None, None), ctypes.get_errno())
        print("unshare", libc.unshare(0x10000000), ctypes.get_errno())
        m = subprocess.run(["mount", "-t", "tmpfs", "none", "/mnt"], capture_output=True)
        print("mount", m.returncode)
        print("umount2", libc.umount2(b"/home/work", 0), ctypes.get_errno())
        print("keyctl", libc.syscall(250, 0, 0, 0, 0, 0), ctypes.get_errno())
    """)
    assert "ptrace -1 1" in out  # PTRACE_TRACEME: EPERM
    assert "unshare -1 1" in out  # CLONE_NEWUSER: EPERM
    assert "mount 0" not in out and "umount2 -1 1" in out and "keyctl -1 1" in out


async def test_root_filesystem_is_read_only(jailed: Jailed) -> None:
    manager, _, (a, _b) = jailed
    out = await run(manager, a, """
        for path in ("/evil", "/usr/bin/evil", "/etc/passwd"):
            try:
                open(path, "a").write("x"); print("wrote", path)
            except OSError as e:
                print("refused", path, e.errno)
        open("/tmp/ok", "w").write("tmp is writable"); print("tmp ok")
        open("/home/work/ok", "w").write("home is writable"); print("home ok")
    """)
    assert "wrote" not in out and out.count("refused") == 3
    assert "tmp ok" in out and "home ok" in out


async def test_fork_bomb_is_contained_by_the_pids_limit(jailed: Jailed) -> None:
    manager, _, (a, _b) = jailed
    out = await run(manager, a, """
        import os, signal
        pids = []
        try:
            for _ in range(5000):
                pids.append(os.posix_spawn("/bin/sleep", ["sleep", "60"], {}))
        except OSError as e:
            print("stopped", len(pids), e.errno)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        for pid in pids:
            os.waitpid(pid, 0)
        print("cleaned")
    """)
    stopped = [line for line in out.splitlines() if line.startswith("stopped")]
    assert stopped, out
    assert 0 < int(stopped[0].split()[1]) < 1024 and "cleaned" in out


async def test_other_kernel_scratch_is_unreachable(jailed: Jailed) -> None:
    manager, harness, (a, b) = jailed
    await run(manager, a, "open('/home/work/secret.txt', 'w').write('A-secret')")
    a_scratch = harness.scratch_root / a.kernel_id
    assert (a_scratch / "secret.txt").read_text() == "A-secret"
    out = await run(manager, b, f"""
        import os, subprocess
        print("host path", os.path.exists({str(a_scratch)!r}))
        dirs = "/home /tmp /mnt /media /srv /opt /var /root /run"
        found = subprocess.run(f"grep -rlsF A-secr""et {{dirs}}", shell=True,
                               capture_output=True, text=True, timeout=20).stdout
        print("found", found.strip() or "nothing")
    """)
    assert "host path False" in out and "found nothing" in out


async def test_other_kernel_runner_port_is_unreachable(jailed: Jailed) -> None:
    manager, harness, (a, b) = jailed
    async with aiodocker.Docker() as docker:
        info = await docker.containers.container(a.container_id).show()
    net = harness.agents[0].cfg.docker.network
    ip = info["NetworkSettings"]["Networks"][net]["IPAddress"]
    out = await run(manager, b, f"""
        import socket
        for port in (2000, 2001, 2002):
            s = socket.socket(); s.settimeout(2)
            try:
                s.connect(({ip!r}, port)); print("reached", port)
            except OSError as e:
                print("blocked", port, type(e).__name__)
            finally:
                s.close()
    """)
    assert "reached" not in out and out.count("blocked") == 3


async def test_session_uid_is_no_host_account(jailed: Jailed) -> None:
    manager, harness, (a, _b) = jailed
    out = await run(manager, a, """
        import os, pwd, subprocess
        print("uid", os.getuid(), os.getgid(), os.getgroups())
        print("whoami", subprocess.run(["whoami"], capture_output=True, text=True).stdout.strip())
        print("home", os.path.expanduser("~"), oct(os.stat("/home/work").st_mode & 0o777))
    """)
    assert f"uid {KERNEL_UID} {KERNEL_GID} [{KERNEL_GID}]" in out and "home /home/work 0o700" in out
    with pytest.raises(KeyError):
        pwd.getpwuid(KERNEL_UID)  # on the host, the session's files belong to nobody
    scratch = harness.scratch_root / a.kernel_id
    assert (scratch.stat().st_uid, scratch.stat().st_gid) == (KERNEL_UID, KERNEL_GID)


async def test_unlisted_syscalls_fail_with_eperm_and_clone3_with_enosys(jailed: Jailed) -> None:
    manager, _, (a, _b) = jailed
    nr = SYSCALLS[platform.machine()]
    out = await run(manager, a, f"""
        import ctypes, socket
        libc = ctypes.CDLL(None, use_errno=True)
        def call(name, *args):
            ctypes.set_errno(0)
            print(name, libc.syscall(*args), ctypes.get_errno())
        params = ctypes.create_string_buffer(120)
        call("io_uring_setup", {nr['io_uring_setup']}, 8, params)
        call("kcmp", {nr['kcmp']}, 1, 1, 0, 0, 0)
        call("userfaultfd", {nr['userfaultfd']}, 0)
        call("clone3", {nr['clone3']}, None, 0)
        call("personality", {nr['personality']}, ctypes.c_ulong(0x0040000))
        for family in (38, 40):
            try:
                socket.socket(family, socket.SOCK_SEQPACKET); print("family", family, "open")
            except OSError as e:
                print("family", family, e.errno)
    """)
    for name in ("io_uring_setup", "kcmp", "userfaultfd", "personality"):
        assert f"{name} -1 1\n" in out, out  # EPERM: not on the allow-list
    assert "clone3 -1 38" in out  # ENOSYS: glibc falls back to the filtered clone
    assert "family 38 1" in out and "family 40 1" in out  # AF_ALG, AF_VSOCK refused


async def test_ordinary_workloads_still_run(jailed: Jailed) -> None:
    manager, _, (a, _b) = jailed
    out = await run(manager, a, """
        import mmap, multiprocessing, os, socket, subprocess, threading, sys, tempfile
        t = threading.Thread(target=print, args=("thread ok",)); t.start(); t.join()
        with multiprocessing.Pool(2) as pool:
            print("pool", pool.map(abs, [-1, -2, -3]))
        print("sub", subprocess.run(["sh", "-c", "echo $((6*7))"], capture_output=True,
                                    text=True).stdout.strip())
        srv = socket.create_server(("127.0.0.1", 0)); cli = socket.create_connection(
            srv.getsockname()); conn, _ = srv.accept(); cli.sendall(b"ping")
        print("tcp", conn.recv(4).decode())
        with tempfile.TemporaryFile(dir="/home/work") as f:
            f.write(b"x" * 8192); f.flush()
            m = mmap.mmap(f.fileno(), 8192); print("mmap", m[:3].decode()); m.close()
        venv = subprocess.run([sys.executable, "-m", "venv", "--without-pip", "/home/work/v"],
                              capture_output=True, text=True)
        print("venv", venv.returncode, venv.stderr[-200:])
    """)
    assert "thread ok" in out and "pool [1, 2, 3]" in out and "sub 42" in out
    assert "tcp ping" in out and "mmap xxx" in out and "venv 0" in out
