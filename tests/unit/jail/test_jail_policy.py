"""The jail's HostConfig and its seccomp profile."""
from __future__ import annotations

import json

from jail.policy import JailPolicy, blocked_syscalls, jail_host_config, seccomp_profile_text

REQUIRED = {"ptrace", "mount", "umount2", "unshare", "setns", "keyctl", "add_key",
            "request_key", "bpf", "perf_event_open", "kexec_load", "kexec_file_load",
            "init_module", "finit_module", "delete_module", "reboot", "swapon", "swapoff",
            "process_vm_readv", "process_vm_writev", "userfaultfd", "open_by_handle_at",
            "pivot_root"}


def test_profile_blocks_every_required_syscall_with_eperm() -> None:
    assert REQUIRED <= blocked_syscalls()
    profile = json.loads(seccomp_profile_text())
    assert profile["defaultAction"] == "SCMP_ACT_ALLOW"
    unconditional = [r for r in profile["syscalls"] if not r.get("args")
                     and "ptrace" in r["names"]]
    assert unconditional[0]["action"] == "SCMP_ACT_ERRNO" and unconditional[0]["errnoRet"] == 1


def test_profile_covers_every_abi_of_the_architecture() -> None:
    arches = json.loads(seccomp_profile_text("x86_64"))["architectures"]
    assert {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"} <= set(arches)


def test_namespace_creating_clone_is_refused() -> None:
    profile = json.loads(seccomp_profile_text())
    clone_rules = [r for r in profile["syscalls"] if r["names"] == ["clone"]]
    flags = {rule["args"][0]["value"] for rule in clone_rules}
    assert 0x10000000 in flags and 0x20000 in flags  # CLONE_NEWUSER, CLONE_NEWNS


def test_host_config_confines_the_container() -> None:
    hc = jail_host_config(JailPolicy(pids_limit=77, nofile=333))
    assert hc["CapDrop"] == ["ALL"] and hc["Privileged"] is False
    assert "no-new-privileges" in hc["SecurityOpt"]
    seccomp = [o for o in hc["SecurityOpt"] if o.startswith("seccomp=")]
    assert json.loads(seccomp[0].removeprefix("seccomp="))["syscalls"]
    assert hc["ReadonlyRootfs"] is True and hc["PidsLimit"] == 77
    assert hc["Ulimits"] == [{"Name": "nofile", "Soft": 333, "Hard": 333}]
