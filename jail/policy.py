"""The jail: Docker HostConfig security options every kernel container runs under.

``jail_host_config()`` returns the security part of a container's HostConfig:
all capabilities dropped, ``no-new-privileges``, the seccomp allow-list in
``seccomp.json`` (passed inline as ``seccomp=<json>``, which the engine accepts),
a read-only root filesystem, a pids limit against fork bombs and an open-files
rlimit. The container runs as ``KERNEL_UID:KERNEL_GID`` unless the agent is
configured otherwise (``jail.uid`` / ``jail.gid``): ids that belong to no account or
group of the host, checked when the agent starts (agent/identity.py).
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
# The session uid/gid: inside 1879048192..2147483647, a range that systemd documents as
# unused (above the container ranges of systemd-nspawn, below 2^31 where signed-int bugs
# start), far above the ids Debian allocates to users (1000..59999) and to subordinate
# ranges (100000..600100000). See docs/agent.md, "The session uid".
KERNEL_UID = 2_000_000_000
KERNEL_GID = 2_000_000_000

# Per host architecture: every ABI its kernel accepts (a filter that omitted the 32-bit
# entry would let ``int 0x80`` pick its own rules) and the syscalls only that architecture
# has. ``modify_ldt`` (x86) is left out on purpose: sessions do not need it.
_ARCHES: dict[str, tuple[list[str], list[str]]] = {
    "x86_64": (["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"], ["arch_prctl"]),
    "aarch64": (["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
                ["arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint",
                 "cacheflush", "set_tls"]),
}


@dataclass(frozen=True)
class JailPolicy:
    pids_limit: int = 1024
    nofile: int = 4096
    readonly_rootfs: bool = True
    tmp_size: str = "256m"


@cache
def seccomp_profile_text(machine: str | None = None) -> str:
    """The seccomp profile as compact JSON, with this host's ABIs and own syscalls filled in.

    Anything the profile does not allow fails with EPERM (``defaultErrnoRet``).
    """
    profile = json.loads(resources.files("jail").joinpath("seccomp.json").read_text())
    arches, own = _ARCHES.get(machine or platform.machine(), ([], []))
    profile["architectures"] = arches
    if own:
        profile["syscalls"].append({"names": own, "action": "SCMP_ACT_ALLOW",
                                    "comment": "this architecture's own syscalls"})
    return json.dumps(profile, separators=(",", ":"))


def allowed_syscalls(machine: str | None = None) -> set[str]:
    """Every syscall the profile allows whatever its arguments."""
    profile = json.loads(seccomp_profile_text(machine))
    return {n for rule in profile["syscalls"] if rule["action"] == "SCMP_ACT_ALLOW"
            and not rule.get("args") for n in rule["names"]}


def filtered_syscalls(machine: str | None = None) -> set[str]:
    """Syscalls allowed only with some arguments (``clone``, ``socket``, ``personality``)."""
    profile = json.loads(seccomp_profile_text(machine))
    return {n for rule in profile["syscalls"] if rule.get("args") for n in rule["names"]}


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
