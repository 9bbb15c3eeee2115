"""CPU is shared (overcommitted cores become a CPU limit), memory is reserved, and GPUs
are placed in fractional shares by the same rule the manager admits with."""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
import zmq

from agent.config import AgentConfig
from agent.resources import FakeGpuProvider, GpuDevice, ResourcePool
from agent.server import session_context
from agent.spec import SpecContext, build_container_config
from common.errors import InvalidAPIParameters, NoAgentAvailable
from common.msg_agent import CreateKernel
from common.slots import GPU, granted_slots

KID = "5b0b8e4e-8c0a-4a4c-9d0e-0c6d7d5d3a11"
CTX = SpecContext(agent_id="ag-1", network="kraken-kernels", scratch_dir=Path("/s/" + KID))
MIB = 2**20
D = Decimal


def _req(slots: dict[str, str]) -> CreateKernel:
    return CreateKernel(kernel_id=KID, session_name="s", access_key="AKIATEST",
                        image="kraken/python:latest", slots=slots, environ={})


def test_default_overcommit_lets_200_one_core_sessions_onto_two_cores() -> None:
    cfg = AgentConfig.model_validate({"manager": {"endpoints": ["tcp://m:5020"],
                                                  "join_token": "t"}})
    assert cfg.resources.cpu_overcommit == 100 and cfg.resources.mem_overcommit == 1
    pool = ResourcePool(2, 24 << 30, [], cfg.resources.cpu_overcommit)
    assert pool.capacity.to_wire()["cpu"] == "200"
    for i in range(200):
        pool.allocate(f"k{i}", {"cpu": D(1), "mem": D(64 * MIB)})
    with pytest.raises(NoAgentAvailable):
        pool.allocate("one-more", {"cpu": D(1), "mem": D(64 * MIB)})


def test_memory_stays_a_hard_reservation_unless_overcommitted() -> None:
    pool = ResourcePool(2, 1 << 30, [], cpu_overcommit=100)
    pool.allocate("a", {"cpu": D(1), "mem": D(768 * MIB)})
    with pytest.raises(NoAgentAvailable):
        pool.allocate("b", {"cpu": D(1), "mem": D(512 * MIB)})
    loose = ResourcePool(2, 1 << 30, [], cpu_overcommit=100, mem_overcommit=2)
    loose.allocate("a", {"cpu": D(1), "mem": D(768 * MIB)})
    loose.allocate("b", {"cpu": D(1), "mem": D(768 * MIB)})


def test_a_sessions_cores_are_a_cpu_limit_not_reserved_cores() -> None:
    granted = granted_slots({"cpu": "0.5", "mem": "64m"}, {})
    host = build_container_config(_req(granted.to_wire()), {}, granted, [], CTX)["HostConfig"]
    assert host["NanoCpus"] == 500_000_000 and host["CpuShares"] == 512
    assert host["Memory"] == 64 * MIB == host["MemorySwap"]
    assert "CpusetCpus" not in host


def _gpus(n: int) -> ResourcePool:
    devices = FakeGpuProvider([GpuDevice(f"GPU-{i}", "Fake", 8 << 30)
                               for i in range(n)]).devices()
    return ResourcePool(cpus=4, mem=64 << 30, gpus=devices, cpu_overcommit=10)


def test_fractional_shares_fill_one_device_before_the_next() -> None:
    pool = _gpus(2)
    quarter = {"cpu": D(1), "mem": D(MIB), GPU: D("0.25")}
    held = [pool.allocate(f"q{i}", quarter).gpu_ids for i in range(4)]
    assert held == [("GPU-0",)] * 4
    assert pool.allocate("half", {**quarter, GPU: D("0.5")}).gpu_ids == ("GPU-1",)
    assert pool.gpu_free() == [0, D("0.5")]
    with pytest.raises(NoAgentAvailable):  # no device is entirely free
        pool.allocate("whole", {**quarter, GPU: D(1)})
    pool.release("half")
    assert pool.allocate("whole", {**quarter, GPU: D(1)}).gpu_ids == ("GPU-1",)
    with pytest.raises(InvalidAPIParameters):
        _gpus(2).allocate("odd", {**quarter, GPU: D("1.5")})


def test_a_share_is_given_its_device_in_the_container() -> None:
    pool = _gpus(2)
    pool.allocate("other", {"cpu": D(1), "mem": D(MIB), GPU: D(1)})
    granted = granted_slots({"cpu": "1", "mem": "64m", "cuda.shares": "0.5"}, {})
    alloc = pool.allocate(KID, granted)
    assert alloc.gpu_ids == ("GPU-1",) and alloc.gpu_share() == D("0.5")
    cfg = build_container_config(_req(granted.to_wire()), {}, granted, alloc.gpu_ids, CTX)
    assert "CUDA_VISIBLE_DEVICES=0" in cfg["Env"]
    assert cfg["HostConfig"]["DeviceRequests"][0]["DeviceIDs"] == ["GPU-1"]


def test_readopted_shares_count_against_their_device() -> None:
    pool = _gpus(1)
    pool.allocate("old", {"cpu": D(1), "mem": D(MIB), GPU: D("0.75")}, ["GPU-0"])
    with pytest.raises(NoAgentAvailable):
        pool.allocate("new", {"cpu": D(1), "mem": D(MIB), GPU: D("0.5")})
    assert pool.allocate("new", {"cpu": D(1), "mem": D(MIB), GPU: D("0.25")}).gpu_ids == \
        ("GPU-0",)


def test_the_runner_socket_context_has_room_for_every_session() -> None:
    ctx = session_context(2000)
    try:
        assert ctx.get(zmq.MAX_SOCKETS) >= 3 * 2000
    finally:
        ctx.term()
