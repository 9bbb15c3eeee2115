"""The jail's HostConfig and its seccomp allow-list."""
from __future__ import annotations

import json
import pwd

from jail.policy import (
    KERNEL_GID,
    KERNEL_UID,
    JailPolicy,
    allowed_syscalls,
    filtered_syscalls,
    jail_host_config,
    seccomp_profile_text,
)

# what no session needs and an attacker wants: never allowed, whatever the arguments
NEVER = {"ptrace", "mount", "umount", "umount2", "unshare", "setns", "keyctl", "add_key",
         "request_key", "bpf", "perf_event_open", "kexec_load", "kexec_file_load",
         "init_module", "finit_module", "delete_module", "reboot", "swapon", "swapoff",
         "process_vm_readv", "process_vm_writev", "userfaultfd", "open_by_handle_at",
         "name_to_handle_at", "pivot_root", "chroot", "acct", "quotactl", "syslog", "iopl",
         "ioperm", "io_uring_setup", "io_uring_enter", "io_uring_register", "fsopen",
         "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr",
         "kcmp", "pidfd_getfd", "process_madvise", "settimeofday", "clock_settime",
         "sethostname", "setdomainname", "modify_ldt", "lookup_dcookie", "vhangup"}
# what the runner, pip, threads, subprocesses and sockets do use
NEEDED = {"read", "write", "openat", "close", "mmap", "mprotect", "munmap", "brk", "futex",
          "execve", "wait4", "pipe2", "dup2", "epoll_wait", "poll", "connect", "sendto",
          "recvfrom", "bind", "listen", "accept4", "getrandom", "rt_sigaction", "set_robust_list",
          "rseq", "prlimit64", "statx", "newfstatat", "getdents64", "kill", "sched_getaffinity",
          "memfd_create", "eventfd2", "copy_file_range", "sendfile", "arch_prctl"}


def test_anything_not_listed_fails_with_eperm() -> None:
    profile = json.loads(seccomp_profile_text("x86_64"))
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO" and profile["defaultErrnoRet"] == 1
    actions = {r["action"] for r in profile["syscalls"]}
    assert actions == {"SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO"}  # no rule allows by default


def test_escape_primitives_are_not_allowed_on_any_architecture() -> None:
    for machine in ("x86_64", "aarch64"):
        assert not NEVER & (allowed_syscalls(machine) | filtered_syscalls(machine))


def test_what_sessions_use_is_allowed() -> None:
    assert NEEDED <= allowed_syscalls("x86_64")
    assert (NEEDED - {"arch_prctl"}) | {"set_tls"} <= allowed_syscalls("aarch64")
    assert "arch_prctl" not in allowed_syscalls("aarch64")
    assert {"clone", "socket", "personality"} == filtered_syscalls("x86_64")


def test_profile_covers_every_abi_of_the_architecture() -> None:
    arches = json.loads(seccomp_profile_text("x86_64"))["architectures"]
    assert {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"} <= set(arches)
    assert json.loads(seccomp_profile_text("aarch64"))["architectures"] == [
        "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]


def test_namespace_creating_clone_is_refused_and_clone3_says_enosys() -> None:
    rules = json.loads(seccomp_profile_text())["syscalls"]
    (clone,) = [r for r in rules if r["names"] == ["clone"]]
    arg = clone["args"][0]
    assert clone["action"] == "SCMP_ACT_ALLOW" and arg["op"] == "SCMP_CMP_MASKED_EQ"
    mask = 0x10000000 | 0x20000 | 0x20000000 | 0x40000000 | 0x8000000 | 0x4000000 | 0x2000000
    assert arg["value"] == mask and arg["valueTwo"] == 0  # allowed only with none of them
    (clone3,) = [r for r in rules if r["names"] == ["clone3"]]
    assert clone3["action"] == "SCMP_ACT_ERRNO" and clone3["errnoRet"] == 38


def test_socket_and_personality_are_allowed_only_with_ordinary_arguments() -> None:
    rules = json.loads(seccomp_profile_text())["syscalls"]
    (sock,) = [r for r in rules if r["names"] == ["socket"]]
    assert sock["args"] == [{"index": 0, "value": 38, "valueTwo": 0, "op": "SCMP_CMP_LT"}]
    personas = {r["args"][0]["value"] for r in rules if r["names"] == ["personality"]}
    assert personas == {0, 8, 0x20000, 0x20008, 0xFFFFFFFF}  # no ADDR_NO_RANDOMIZE (0x40000)


def test_session_ids_are_no_host_account_and_fit_in_31_bits() -> None:
    assert 1879048192 <= KERNEL_UID < 2**31 and 1879048192 <= KERNEL_GID < 2**31
    assert KERNEL_UID not in {p.pw_uid for p in pwd.getpwall()}


def test_host_config_confines_the_container() -> None:
    hc = jail_host_config(JailPolicy(pids_limit=77, nofile=333))
    assert hc["CapDrop"] == ["ALL"] and hc["Privileged"] is False
    assert "no-new-privileges" in hc["SecurityOpt"]
    seccomp = [o for o in hc["SecurityOpt"] if o.startswith("seccomp=")]
    assert json.loads(seccomp[0].removeprefix("seccomp="))["syscalls"]
    assert hc["ReadonlyRootfs"] is True and hc["PidsLimit"] == 77
    assert hc["Ulimits"] == [{"Name": "nofile", "Soft": 333, "Hard": 333}]
