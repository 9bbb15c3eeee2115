"""The jail: Docker HostConfig security options every kernel container runs under.

``jail_host_config()`` returns the security part of a container's HostConfig:
all capabilities dropped, ``no-new-privileges``, the seccomp deny-list in
``seccomp.json`` (passed inline as ``seccomp=<json>``, which the engine accepts),
a read-only root filesystem, a pids limit against fork bombs and an open-files
rlimit. The container runs as the unprivileged image user ``work`` (uid 1000).
See THREAT_MODEL.md for what this does and does not defend against.
"""
from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

KERNEL_USER = "work"
KERNEL_UID = 1000
KERNEL_GID = 1000

_ARCHES = {
    "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
}


@dataclass(frozen=True)
class JailPolicy:
    pids_limit: int = 1024
    nofile: int = 4096
    readonly_rootfs: bool = True
    tmp_size: str = "256m"


@cache
def seccomp_profile_text(machine: str | None = None) -> str:
    """The seccomp profile as compact JSON, with this host's syscall ABIs filled in.

    Listing every ABI of the architecture matters: a deny-list would otherwise be
    bypassed through the 32-bit syscall entry (``int 0x80``) on x86_64.
    """
    profile = json.loads(resources.files("jail").joinpath("seccomp.json").read_text())
    profile["architectures"] = _ARCHES.get(machine or platform.machine(), [])
    return json.dumps(profile, separators=(",", ":"))


def blocked_syscalls() -> set[str]:
    """Every syscall the profile refuses unconditionally."""
    profile = json.loads(seccomp_profile_text())
    return {n for rule in profile["syscalls"] if not rule.get("args") for n in rule["names"]}


def jail_host_config(policy: JailPolicy = JailPolicy()) -> dict[str, Any]:
    """The HostConfig keys that confine a kernel container."""
    return {
        "CapDrop": ["ALL"],
        "SecurityOpt": ["no-new-privileges", "seccomp=" + seccomp_profile_text()],
        "ReadonlyRootfs": policy.readonly_rootfs,
        "PidsLimit": policy.pids_limit,
        "Ulimits": [{"Name": "nofile", "Soft": policy.nofile, "Hard": policy.nofile}],
        "Tmpfs": {"/tmp": f"rw,nosuid,nodev,size={policy.tmp_size}"},
        "Privileged": False,
        "Init": True,
    }
