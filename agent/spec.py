"""The Docker create config of a kernel container, built from one CreateKernel.

One pure function, ``build_container_config``, decides everything a container is:
resource limits (from ``common.slots.granted_slots``), labels (the agent's truth
for recovery), environment (reserved names cannot be overridden), mounts (the
kernel's scratch dir at /home/work plus the requested vfolders), network, GPUs and
the jail's security options.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import InvalidOperation
from pathlib import Path
from typing import Any

from agent.backend import (
    LABEL_AGENT,
    LABEL_GPUS,
    LABEL_IDLE_TIMEOUT,
    LABEL_KERNEL_ID,
    LABEL_MANAGED,
    LABEL_OWNER,
    LABEL_SESSION,
    LABEL_SLOTS,
)
from agent.resources import device_requests
from common.errors import InvalidAPIParameters, InvalidImageLabel
from common.msg_agent import CreateKernel
from common.slots import CPU, MEM, ResourceSlot, parse_bytes
from jail.policy import KERNEL_GID, KERNEL_UID, KERNEL_USER, JailPolicy, jail_host_config

HOME = "/home/work"
LABEL_TIMEOUT = "ai.backend.timeout"
LABEL_FEATURES = "ai.backend.features"
LABEL_CORECOUNT_ENVS = "ai.backend.envs.corecount"
LABEL_SCRATCH = "kraken.scratch.size"  # the image's /home/work size, e.g. "4g"
BASE_ENV = {"LANG": "C.UTF-8", "TERM": "xterm", "HOME": HOME, "USER": KERNEL_USER,
            "SHELL": "/bin/bash"}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class SpecContext:
    """What the agent adds to every container, independent of the request."""

    agent_id: str
    network: str
    scratch_dir: Path
    jail: JailPolicy = field(default_factory=JailPolicy)
    uid: int = KERNEL_UID  # the session uid/gid (agent config jail.uid / jail.gid)
    gid: int = KERNEL_GID


def scratch_size(labels: Mapping[str, str], default: int, maximum: int) -> int:
    """Bytes of the kernel's /home/work: ``kraken.scratch.size`` or the default, capped."""
    text = labels.get(LABEL_SCRATCH)
    if text is None:
        return min(default, maximum)
    try:
        size = parse_bytes(text)
    except (ValueError, InvalidOperation):
        raise InvalidImageLabel(
            f"image label {LABEL_SCRATCH}={text!r} is not a size such as 4g") from None
    if size <= 0:
        raise InvalidImageLabel(f"image label {LABEL_SCRATCH}={text!r} must be positive")
    return min(size, maximum)


def image_features(labels: Mapping[str, str]) -> list[str]:
    return [f for f in labels.get(LABEL_FEATURES, "").split() if f]


def image_timeout(labels: Mapping[str, str]) -> float:
    """``ai.backend.timeout`` seconds; 0 means no limit."""
    try:
        return max(float(labels.get(LABEL_TIMEOUT, "0")), 0.0)
    except ValueError:
        return 0.0


def kernel_environ(environ: Mapping[str, str], labels: Mapping[str, str],
                   cores: int, gpus: int = 0) -> list[str]:
    """Docker ``Env``: the user's variables plus the reserved ones they may not override.

    With GPUs, DeviceRequests names the devices by uuid and the NVIDIA runtime shows
    exactly those in the container, numbered 0 … n-1: CUDA_VISIBLE_DEVICES lists them.
    """
    reserved = dict(BASE_ENV)
    if gpus:
        reserved["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(gpus))
    for name in labels.get(LABEL_CORECOUNT_ENVS, "").replace(",", " ").split():
        reserved[name] = str(cores)
    clash = sorted(set(environ) & set(reserved))
    if clash:
        raise InvalidAPIParameters(f"reserved environment variables cannot be set: {clash}")
    for name, value in environ.items():
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            raise InvalidAPIParameters(f"invalid environment variable name {name!r}")
        if not isinstance(value, str):
            raise InvalidAPIParameters(f"environment variable {name} must be a string")
    merged = {**environ, **reserved}
    return [f"{k}={v}" for k, v in sorted(merged.items())]


def _mounts(scratch_dir: Path, extra: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    mounts = [{"Type": "bind", "Source": str(scratch_dir), "Target": HOME}]
    for m in extra:
        host, target, mode = m.get("host_path"), m.get("target"), m.get("mode", "rw")
        if not isinstance(host, str) or not host.startswith("/"):
            raise InvalidAPIParameters(f"mount host_path must be absolute: {host!r}")
        if not isinstance(target, str) or not target.startswith(HOME + "/") or ".." in target:
            raise InvalidAPIParameters(f"mount target must be under {HOME}: {target!r}")
        if mode not in ("ro", "rw"):
            raise InvalidAPIParameters(f"mount mode must be ro or rw: {mode!r}")
        mounts.append({"Type": "bind", "Source": host, "Target": target,
                       "ReadOnly": mode == "ro"})
    return mounts


def _labels(req: CreateKernel, ctx: SpecContext, granted: ResourceSlot,
            gpu_ids: Sequence[str]) -> dict[str, str]:
    labels = {
        LABEL_KERNEL_ID: req.kernel_id,
        LABEL_SESSION: req.session_name,
        LABEL_OWNER: req.access_key,
        LABEL_AGENT: ctx.agent_id,
        LABEL_MANAGED: "1",
        LABEL_SLOTS: json.dumps(granted.to_wire(), sort_keys=True),
        LABEL_GPUS: json.dumps(list(gpu_ids)),
    }
    if req.idle_timeout:
        labels[LABEL_IDLE_TIMEOUT] = repr(float(req.idle_timeout))
    return labels


def build_container_config(req: CreateKernel, labels: Mapping[str, str],
                           granted: ResourceSlot, gpu_ids: Sequence[str],
                           ctx: SpecContext) -> dict[str, Any]:
    """The body of ``POST /containers/create`` for this kernel."""
    cores = max(math.ceil(granted.get_amount(CPU)), 1)
    mem = int(granted.get_amount(MEM))
    host_config: dict[str, Any] = {
        **jail_host_config(ctx.jail),
        # CPU is shared (docs/agent.md): the session's cores are a ceiling (NanoCpus)
        # and its weight when cores are contended (CpuShares, 1024 per core), never a
        # cpuset of reserved cores
        "NanoCpus": int(granted.get_amount(CPU) * 1_000_000_000),
        "CpuShares": max(int(granted.get_amount(CPU) * 1024), 2),
        "Memory": mem,
        "MemorySwap": mem,
        "Mounts": _mounts(ctx.scratch_dir, req.mounts),
        "NetworkMode": ctx.network,
    }
    if gpu_ids:
        host_config["DeviceRequests"] = device_requests(gpu_ids)
    return {
        "Image": req.image,
        "Hostname": "kernel-" + req.kernel_id[:8],
        "User": f"{ctx.uid}:{ctx.gid}",
        "WorkingDir": HOME,
        "Env": kernel_environ(req.environ, labels, cores, len(gpu_ids)),
        "Labels": _labels(req, ctx, granted, gpu_ids),
        "HostConfig": host_config,
    }
