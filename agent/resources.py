"""Host resources: CPU and memory capacity, GPU discovery, and per-kernel slot accounting.

GPUs are found through a ``GpuProvider``: ``NvmlGpuProvider`` asks NVIDIA's NVML
(``pynvml`` from nvidia-ml-py, imported lazily; no driver means no GPUs) and
``FakeGpuProvider`` serves the device list from the config, for tests and development.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from common.errors import InvalidAPIParameters, NoAgentAvailable
from common.slots import CPU, GPU, MEM, Number, ResourceSlot, assign_gpus, gpu_amount

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GpuDevice:
    uuid: str
    name: str
    memory: int  # bytes

    def to_wire(self) -> dict[str, Any]:
        return {"uuid": self.uuid, "name": self.name, "memory": self.memory}


@dataclass(frozen=True)
class GpuUsage:
    """One device's current figures: GPU busy percent (last sample period) and memory
    in use by all its processes (bytes)."""

    util_percent: int
    mem_used: int


class GpuProvider(Protocol):
    def devices(self) -> list[GpuDevice]: ...

    def usage(self, uuids: Sequence[str]) -> dict[str, GpuUsage]: ...


class FakeGpuProvider:
    """GPUs declared in the config (``resources.fake_gpus``); NVML is not touched. Their
    usage figures are the fixed ones given (0 unless configured)."""

    def __init__(self, devices: Sequence[GpuDevice],
                 usage: Mapping[str, GpuUsage] | None = None) -> None:
        self._devices = list(devices)
        self._usage = dict(usage or {})

    def devices(self) -> list[GpuDevice]:
        return list(self._devices)

    def usage(self, uuids: Sequence[str]) -> dict[str, GpuUsage]:
        known = {d.uuid for d in self._devices}
        return {u: self._usage.get(u, GpuUsage(0, 0)) for u in uuids if u in known}


class NvmlGpuProvider:
    """NVIDIA GPUs through NVML; a host without the driver library has none."""

    def devices(self) -> list[GpuDevice]:
        try:
            import pynvml
        except ImportError:
            return []
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as e:
            log.info("NVML unavailable (%s): no GPUs", e)
            return []
        try:
            return [self._device(pynvml, i) for i in range(pynvml.nvmlDeviceGetCount())]
        finally:
            pynvml.nvmlShutdown()

    def usage(self, uuids: Sequence[str]) -> dict[str, GpuUsage]:
        """Utilisation and memory in use of these devices (by uuid); devices NVML
        cannot answer for are left out, and no NVML means no figures. Blocking: call it
        in a thread."""
        if not uuids:
            return {}
        try:
            import pynvml
        except ImportError:
            return {}
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError:
            return {}
        out: dict[str, GpuUsage] = {}
        try:
            for uuid in uuids:
                try:
                    handle = pynvml.nvmlDeviceGetHandleByUUID(uuid)
                    rates = pynvml.nvmlDeviceGetUtilizationRates(handle)
                    mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
                except pynvml.NVMLError as e:
                    log.warning("NVML has no figures for %s: %s", uuid, e)
                    continue
                out[uuid] = GpuUsage(util_percent=int(rates.gpu), mem_used=int(mem.used))
        finally:
            pynvml.nvmlShutdown()
        return out

    @staticmethod
    def _device(pynvml: Any, index: int) -> GpuDevice:
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        uuid = pynvml.nvmlDeviceGetUUID(handle)
        name = pynvml.nvmlDeviceGetName(handle)
        mem = pynvml.nvmlDeviceGetMemoryInfo(handle).total
        return GpuDevice(uuid=_text(uuid), name=_text(name), memory=int(mem))


def _text(v: str | bytes) -> str:
    return v.decode() if isinstance(v, bytes) else v


def host_memory(meminfo: Path = Path("/proc/meminfo")) -> int:
    """MemTotal in bytes."""
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no MemTotal in {meminfo}")


def host_cpus() -> int:
    return len(os.sched_getaffinity(0))


@dataclass(frozen=True)
class Allocation:
    """What one kernel holds: its slots and the GPU uuids it was given."""

    slots: ResourceSlot
    gpu_ids: tuple[str, ...] = ()

    def gpu_share(self) -> Decimal:
        """The share of each of its devices this kernel holds (``assign_gpus``)."""
        if not self.gpu_ids:
            return Decimal(0)
        return self.slots.get_amount(GPU) / len(self.gpu_ids)


class ResourcePool:
    """Capacity of this host and what its kernels occupy; all bookkeeping, no I/O.

    CPU is shared: the pool offers ``cpus × cpu_overcommit`` cores and a kernel's cores
    become a CPU limit (spec.py), not a reservation of physical cores. Memory is a hard
    reservation unless ``mem_overcommit`` > 1. GPUs are offered as one ``cuda.shares``
    per device and placed with ``common.slots.assign_gpus``.
    """

    def __init__(self, cpus: int, mem: int, gpus: Sequence[GpuDevice],
                 cpu_overcommit: Number = 1, mem_overcommit: Number = 1,
                 gpu_provider: GpuProvider | None = None) -> None:
        self.gpus = list(gpus)
        self.gpu_provider = gpu_provider  # for usage figures (stats); None: none
        capacity: dict[str, Decimal] = {
            CPU: Decimal(cpus) * Decimal(str(cpu_overcommit)),
            MEM: (Decimal(mem) * Decimal(str(mem_overcommit))).to_integral_value(),
        }
        if self.gpus:
            capacity[GPU] = Decimal(len(self.gpus))
        self.capacity = ResourceSlot(capacity)
        self._held: dict[str, Allocation] = {}

    @property
    def occupied(self) -> ResourceSlot:
        total = ResourceSlot({k: 0 for k in self.capacity})
        for alloc in self._held.values():
            total = total + alloc.slots
        return total

    @property
    def available(self) -> ResourceSlot:
        return self.capacity - self.occupied

    def allocation(self, kernel_id: str) -> Allocation | None:
        return self._held.get(kernel_id)

    def allocate(self, kernel_id: str, slots: Mapping[str, Decimal],
                 gpu_ids: Sequence[str] | None = None) -> Allocation:
        """Reserve ``slots`` for a kernel; ``gpu_ids`` re-adopts known devices."""
        want = ResourceSlot(slots)
        if not want.is_nonnegative():
            raise InvalidAPIParameters(f"negative resource request {want.to_wire()}")
        if kernel_id in self._held:
            raise InvalidAPIParameters(f"kernel {kernel_id} already holds resources")
        if not want.fits_in(self.available):
            raise NoAgentAvailable(
                f"{want.to_wire()} does not fit in {self.available.to_wire()}")
        ids = tuple(gpu_ids) if gpu_ids is not None else self._pick_gpus(want.get_amount(GPU))
        alloc = Allocation(slots=want, gpu_ids=ids)
        self._held[kernel_id] = alloc
        return alloc

    def release(self, kernel_id: str) -> None:
        self._held.pop(kernel_id, None)

    def gpu_free(self) -> list[Decimal]:
        """Each device's unused share (1 = entirely free), in device order."""
        used = {g.uuid: Decimal(0) for g in self.gpus}
        for alloc in self._held.values():
            for uuid in alloc.gpu_ids:
                if uuid in used:
                    used[uuid] += alloc.gpu_share()
        return [1 - used[g.uuid] for g in self.gpus]

    def _pick_gpus(self, amount: Decimal) -> tuple[str, ...]:
        if amount <= 0:
            return ()
        picked = assign_gpus(self.gpu_free(), gpu_amount(amount))
        if picked is None:
            raise NoAgentAvailable(f"{amount} GPU share(s) requested; free per device: "
                                   f"{[str(f) for f in self.gpu_free()]}")
        return tuple(self.gpus[i].uuid for i in picked)


def device_requests(gpu_ids: Sequence[str]) -> list[dict[str, Any]]:
    """The HostConfig ``DeviceRequests`` giving a container these NVIDIA GPUs."""
    if not gpu_ids:
        return []
    return [{"Driver": "nvidia", "DeviceIDs": list(gpu_ids), "Capabilities": [["gpu"]]}]


def build_pool(reserved_cpu: int, reserved_mem: int, provider: GpuProvider,
               cpu_overcommit: Number = 1, mem_overcommit: Number = 1) -> ResourcePool:
    """This host's capacity minus what the operator reserved for itself, overcommitted."""
    cpus = max(host_cpus() - reserved_cpu, 0)
    mem = max(host_memory() - reserved_mem, 0)
    return ResourcePool(cpus, mem, provider.devices(), cpu_overcommit, mem_overcommit,
                        provider)
