"""GPU utilisation in a kernel's stats: fixed figures from the fake device set, the NVML
calls through a stand-in ``pynvml``, and a clean skip where NVML is absent."""
from __future__ import annotations

import json
import sys
import types
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import zmq.asyncio

from agent.backend import ContainerInfo
from agent.kernels import KernelRegistry
from agent.resources import FakeGpuProvider, GpuDevice, GpuUsage, NvmlGpuProvider, ResourcePool
from agent.server import gpu_provider_for
from agent.stats import gpu_stats
from tests.unit.agent.fake_backend import FakeBackend, agent_config

GIB = 1 << 30


async def test_a_kernels_stats_show_its_devices_figures(tmp_path: Path) -> None:
    provider = FakeGpuProvider(
        [GpuDevice("GPU-0", "Fake", 8 * GIB), GpuDevice("GPU-1", "Fake", 8 * GIB)],
        {"GPU-0": GpuUsage(40, GIB), "GPU-1": GpuUsage(80, 3 * GIB)})
    backend = FakeBackend()
    kid, plain = str(uuid.uuid4()), str(uuid.uuid4())
    for cid, k, slots, gpus in (("c0", kid, {"cpu": "1", "cuda.shares": "2"}, ["GPU-0", "GPU-1"]),
                                ("c1", plain, {"cpu": "1"}, [])):
        backend.containers[cid] = ContainerInfo(
            container_id=cid, running=True, ip=backend.ip,
            labels={"ai.backend.kernel-id": k, "kraken.slots": json.dumps(slots),
                    "kraken.gpus": json.dumps(gpus)})
    pool = ResourcePool(4, 8 * GIB, provider.devices(), gpu_provider=provider)
    zctx = zmq.asyncio.Context()

    async def sink(event: object) -> None:
        return None
    registry = KernelRegistry(agent_config(tmp_path / "scratch"), backend, pool, zctx, sink)
    try:
        await registry.recover()
        stats = await registry.stats(kid)
        assert stats["gpu_util"] == 60 and stats["gpu_mem_used_bytes"] == 4 * GIB
        assert "gpu_util" not in await registry.stats(plain)
    finally:
        await registry.close()
        zctx.term()


def test_fake_gpus_from_the_config_carry_their_fixed_figures(tmp_path: Path) -> None:
    cfg = agent_config(tmp_path, resources={"fake_gpus": [
        {"uuid": "GPU-a", "memory": 8 * GIB, "util_percent": 25, "mem_used": 512 << 20}]})
    provider = gpu_provider_for(cfg)
    assert provider.usage(["GPU-a", "GPU-x"]) == {"GPU-a": GpuUsage(25, 512 << 20)}
    assert gpu_stats(provider.usage(["GPU-a"]), ["GPU-a"]) == {
        "gpu_util": 25, "gpu_mem_used_bytes": 512 << 20}


class _NVMLError(Exception):
    pass


def _stand_in_pynvml(calls: list[str]) -> types.ModuleType:
    """The pynvml calls NvmlGpuProvider makes, answering for one device ``GPU-real``."""
    mod = types.ModuleType("pynvml")
    handles = {"GPU-real": object()}

    def handle_by_uuid(u: str) -> Any:
        calls.append(f"handle:{u}")
        if u not in handles:
            raise _NVMLError("not found")
        return handles[u]
    mod.NVMLError = _NVMLError  # type: ignore[attr-defined]
    mod.nvmlInit = lambda: calls.append("init")  # type: ignore[attr-defined]
    mod.nvmlShutdown = lambda: calls.append("shutdown")  # type: ignore[attr-defined]
    mod.nvmlDeviceGetHandleByUUID = handle_by_uuid  # type: ignore[attr-defined]
    mod.nvmlDeviceGetUtilizationRates = (  # type: ignore[attr-defined]
        lambda h: SimpleNamespace(gpu=73, memory=10))
    mod.nvmlDeviceGetMemoryInfo = (  # type: ignore[attr-defined]
        lambda h: SimpleNamespace(total=80 * GIB, used=5 * GIB, free=75 * GIB))
    return mod


def test_nvml_usage_reads_utilisation_and_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setitem(sys.modules, "pynvml", _stand_in_pynvml(calls))
    usage = NvmlGpuProvider().usage(["GPU-real", "GPU-gone"])
    assert usage == {"GPU-real": GpuUsage(73, 5 * GIB)}  # the unknown device is left out
    assert calls[0] == "init" and calls[-1] == "shutdown"


def test_without_nvml_there_are_no_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    assert NvmlGpuProvider().usage(["GPU-0"]) == {} and NvmlGpuProvider().devices() == []


@pytest.mark.gpu
def test_real_nvml_when_the_host_has_a_gpu() -> None:
    """Runs only where NVML answers (a GPU host); elsewhere it is skipped."""
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        pytest.skip("no NVML on this host")
    pynvml.nvmlShutdown()
    provider = NvmlGpuProvider()
    devices = provider.devices()
    assert devices, "NVML answers but lists no device"
    usage = provider.usage([d.uuid for d in devices])
    assert set(usage) == {d.uuid for d in devices}
    assert all(0 <= u.util_percent <= 100 and 0 <= u.mem_used <= d.memory
               for d, u in zip(devices, usage.values(), strict=True))
