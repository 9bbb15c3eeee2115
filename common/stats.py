"""The keys of the Container Stats Object (seed 004 §2.9.8): what an agent reports for a
kernel and what the manager stores and shows. Defined here once for both sides."""
from __future__ import annotations

STAT_KEYS = ("cpu_used", "mem_max_bytes", "mem_cur_bytes", "net_rx_bytes", "net_tx_bytes",
             "io_read_bytes", "io_write_bytes", "io_max_scratch_size", "io_cur_scratch_size")


# added for a kernel that holds GPUs: the mean busy percent of its devices and the
# memory in use on them (device-wide figures: a fractional share sees its neighbours')
GPU_STAT_KEYS = ("gpu_util", "gpu_mem_used_bytes")


def empty_stats() -> dict[str, int]:
    return {k: 0 for k in STAT_KEYS}
