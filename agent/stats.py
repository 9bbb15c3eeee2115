"""The Container Stats Object (seed 004 §2.9.8) from Docker's stats JSON.

Handles both cgroup v1 and v2 shapes of ``memory_stats`` and ``blkio_stats``. A kernel
that holds GPUs also gets ``GPU_STAT_KEYS`` from NVML (``gpu_stats``).
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agent.resources import GpuUsage
from common.confined_fs import DIR_FLAGS, usage
from common.errors import KrakenError
from common.stats import GPU_STAT_KEYS, empty_stats


def stats_from_docker(raw: dict[str, Any]) -> dict[str, int]:
    """Convert one ``GET /containers/{id}/stats`` sample."""
    out = empty_stats()
    cpu = ((raw.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage") or 0
    out["cpu_used"] = int(cpu) // 1_000_000
    mem = raw.get("memory_stats") or {}
    out["mem_cur_bytes"] = int(mem.get("usage") or 0)
    out["mem_max_bytes"] = int(mem.get("max_usage") or out["mem_cur_bytes"])
    for net in (raw.get("networks") or {}).values():
        out["net_rx_bytes"] += int(net.get("rx_bytes") or 0)
        out["net_tx_bytes"] += int(net.get("tx_bytes") or 0)
    for entry in (raw.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []:
        op = str(entry.get("op", "")).lower()
        if op == "read":
            out["io_read_bytes"] += int(entry.get("value") or 0)
        elif op == "write":
            out["io_write_bytes"] += int(entry.get("value") or 0)
    return out


def gpu_stats(usage: Mapping[str, GpuUsage], gpu_ids: Sequence[str]) -> dict[str, int]:
    """``GPU_STAT_KEYS`` over a kernel's devices; {} when it holds none or no figures."""
    figures = [usage[u] for u in gpu_ids if u in usage]
    if not figures:
        return {}
    util = sum(f.util_percent for f in figures) // len(figures)
    return dict(zip(GPU_STAT_KEYS, (util, sum(f.mem_used for f in figures)), strict=True))


def dir_size(path: Path) -> int:
    """Apparent bytes of the files under ``path``, walked by descriptors (a symlink
    or FIFO a kernel swaps in is never followed or opened); 0 if absent."""
    try:
        fd = os.open(path, DIR_FLAGS)
    except OSError:
        return 0
    try:
        return usage(fd)[1]
    except (OSError, KrakenError):
        return 0
    finally:
        os.close(fd)
