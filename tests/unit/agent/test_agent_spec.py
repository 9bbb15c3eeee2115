"""The container spec builder, resources and the agent config."""
from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from agent.config import AgentConfig, load_agent_config
from agent.resources import FakeGpuProvider, GpuDevice, ResourcePool, device_requests
from agent.spec import SpecContext, build_container_config
from common.config import ConfigError
from common.errors import InvalidAPIParameters, NoAgentAvailable
from common.msg_agent import CreateKernel
from common.slots import granted_slots
from jail.policy import KERNEL_GID, KERNEL_UID

KID = "5b0b8e4e-8c0a-4a4c-9d0e-0c6d7d5d3a11"
LABELS = {"ai.backend.maxcores": "2", "ai.backend.maxmem": "1g",
          "ai.backend.envs.corecount": "OPENBLAS_NUM_THREADS,OMP_NUM_THREADS"}
CTX = SpecContext(agent_id="ag-1", network="kraken-kernels", scratch_dir=Path("/s/" + KID))


def req(**over: object) -> CreateKernel:
    base: dict = {"kernel_id": KID, "session_name": "sess", "access_key": "AKIATEST",
                  "image": "kraken/python:latest", "slots": {"cpu": "4", "mem": str(4 << 30)},
                  "environ": {"FOO": "bar"}}
    base.update(over)
    return CreateKernel(**base)


def test_image_labels_cap_cpu_and_memory() -> None:
    granted = granted_slots({"cpu": "4", "mem": str(4 << 30)}, LABELS)
    assert granted.to_wire() == {"cpu": "2", "mem": str(1 << 30)}
    assert granted_slots({"cpu": "0.5", "mem": "1000"}, LABELS).to_wire() == {
        "cpu": "0.5", "mem": "1000"}


@pytest.mark.parametrize("slots", [{"cpu": "-1"}, {"cpu": "abc"}, {"cpu": "0"},
                                   {"tpu": "1"}, {"mem": "NaN"}])
def test_bad_slot_requests_are_invalid(slots: dict[str, str]) -> None:
    with pytest.raises(InvalidAPIParameters):
        granted_slots(slots, LABELS)


def test_container_config_limits_labels_env_and_mounts() -> None:
    granted = granted_slots(req().slots, LABELS)
    cfg = build_container_config(req(), LABELS, granted, [], CTX)
    hc = cfg["HostConfig"]
    assert hc["NanoCpus"] == 2_000_000_000
    assert hc["Memory"] == hc["MemorySwap"] == 1 << 30
    assert hc["NetworkMode"] == "kraken-kernels" and hc["Init"] is True
    assert "DeviceRequests" not in hc
    assert hc["Mounts"][0] == {"Type": "bind", "Source": "/s/" + KID, "Target": "/home/work"}
    assert "/tmp" in hc["Tmpfs"] and hc["ReadonlyRootfs"] is True
    assert cfg["User"] == f"{KERNEL_UID}:{KERNEL_GID}"  # numeric: not the image's user
    labels = cfg["Labels"]
    assert labels["ai.backend.kernel-id"] == KID
    assert labels["ai.backend.session-name"] == "sess"
    assert labels["ai.backend.owner"] == "AKIATEST"
    assert labels["ai.backend.agent-id"] == "ag-1" and labels["kraken.managed"] == "1"
    assert json.loads(labels["kraken.slots"]) == {"cpu": "2", "mem": str(1 << 30)}
    env = dict(e.split("=", 1) for e in cfg["Env"])
    assert env["FOO"] == "bar" and env["HOME"] == "/home/work" and env["USER"] == "work"
    assert env["LANG"] == "C.UTF-8" and env["SHELL"] == "/bin/bash" and env["TERM"] == "xterm"
    assert env["OMP_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "2"


@pytest.mark.parametrize("environ", [{"HOME": "/root"}, {"OMP_NUM_THREADS": "64"},
                                     {"BAD-NAME": "x"}, {"X": 1}])
def test_reserved_or_bad_environment_is_refused(environ: dict) -> None:
    granted = granted_slots(req().slots, LABELS)
    with pytest.raises(InvalidAPIParameters):
        build_container_config(req(environ=environ), LABELS, granted, [], CTX)


@pytest.mark.parametrize("mount", [
    {"host_path": "relative", "target": "/home/work/a"},
    {"host_path": "/data", "target": "/etc"},
    {"host_path": "/data", "target": "/home/work/../../etc"},
    {"host_path": "/data", "target": "/home/work/a", "mode": "rwx"},
])
def test_bad_mounts_are_refused(mount: dict) -> None:
    granted = granted_slots(req().slots, LABELS)
    with pytest.raises(InvalidAPIParameters):
        build_container_config(req(mounts=[mount]), LABELS, granted, [], CTX)


def test_vfolder_mount_read_only() -> None:
    granted = granted_slots(req().slots, LABELS)
    m = {"host_path": "/data/vf1", "target": "/home/work/vf1", "mode": "ro"}
    cfg = build_container_config(req(mounts=[m]), LABELS, granted, [], CTX)
    assert cfg["HostConfig"]["Mounts"][1] == {
        "Type": "bind", "Source": "/data/vf1", "Target": "/home/work/vf1", "ReadOnly": True}


def _gpu_pool() -> ResourcePool:
    gpus = FakeGpuProvider([GpuDevice("GPU-a", "Fake", 8 << 30),
                            GpuDevice("GPU-b", "Fake", 8 << 30)]).devices()
    return ResourcePool(cpus=4, mem=8 << 30, gpus=gpus)


def test_gpu_allocation_gives_distinct_devices_and_device_requests() -> None:
    pool = _gpu_pool()
    assert pool.capacity.to_wire()["cuda.shares"] == "2"
    a = pool.allocate("k1", {"cpu": Decimal(1), "mem": Decimal(1 << 30), "cuda.device": Decimal(1)})
    b = pool.allocate("k2", {"cpu": Decimal(1), "mem": Decimal(1 << 30), "cuda.device": Decimal(1)})
    assert {a.gpu_ids, b.gpu_ids} == {("GPU-a",), ("GPU-b",)}
    with pytest.raises(NoAgentAvailable):
        pool.allocate("k3", {"cpu": Decimal(1), "cuda.device": Decimal(1)})
    pool.release("k1")
    assert pool.allocate("k3", {"cuda.device": Decimal(1)}).gpu_ids == a.gpu_ids
    granted = granted_slots({"cpu": "1", "mem": "1g", "cuda.device": "1"}, {})
    cfg = build_container_config(req(), {}, granted, b.gpu_ids, CTX)
    assert cfg["HostConfig"]["DeviceRequests"] == device_requests(b.gpu_ids) == [
        {"Driver": "nvidia", "DeviceIDs": list(b.gpu_ids), "Capabilities": [["gpu"]]}]


def test_pool_refuses_what_does_not_fit_and_frees_exactly() -> None:
    pool = ResourcePool(cpus=2, mem=4 << 30, gpus=[])
    pool.allocate("k1", {"cpu": Decimal("1.5"), "mem": Decimal(1 << 30)})
    with pytest.raises(NoAgentAvailable):
        pool.allocate("k2", {"cpu": Decimal(1), "mem": Decimal(1)})
    with pytest.raises(NoAgentAvailable):
        pool.allocate("k2", {"cpu": Decimal(1), "cuda.device": Decimal(1)})
    pool.release("k1")
    assert pool.available == pool.capacity


def test_config_defaults_and_errors(tmp_path: Path) -> None:
    cfg = AgentConfig.model_validate({"manager": {"endpoints": ["tcp://m:5020"],
                                                  "join_token": "t"}})
    assert cfg.region == "local" and cfg.docker.network == "kraken-kernels"
    assert cfg.runner.ready_timeout == 30 and cfg.agent_id
    bad = tmp_path / "a.toml"
    bad.write_text('[manager]\nendpoints = ["tcp://m:1"]\n')
    with pytest.raises(ConfigError, match="join_token"):
        load_agent_config(bad)
    bad.write_text('[manager]\nendpoints = ["tcp://m:1"]\njoin_token="t"\n'
                   '[resources]\nreserved_mem = "12q"\n')
    with pytest.raises(ConfigError, match="reserved_mem"):
        load_agent_config(bad)
    missing = AgentConfig.model_validate({"manager": {
        "endpoints": ["tcp://m:1"], "join_token_file": str(tmp_path / "nope")}})
    with pytest.raises(ConfigError, match="cannot read"):
        missing.manager.token()
