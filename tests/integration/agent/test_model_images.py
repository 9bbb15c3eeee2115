"""The CPU model images run their libraries inside a real session under the agent's jail
(the seccomp allow-list, the unprivileged session uid, no capabilities)."""
from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from common.msg_agent import Execute, ExecuteResult, KernelCreated
from jail.policy import KERNEL_UID
from kernels import build
from kernels.model_images import CPU_MODELS, ModelImage
from tests.integration.agent.harness import AgentHarness, FakeManager

pytestmark = pytest.mark.integration

PROBE = """
import os, subprocess
import torch
torch.set_num_threads(2)
x = torch.randn(256, 256) @ torch.randn(256, 256)
print("torch", torch.__version__, torch.get_num_threads(), bool(torch.isfinite(x.sum())))
import numpy, pycolmap, mcubes, trimesh
v, f = mcubes.marching_cubes(numpy.pad(numpy.ones((4, 4, 4)), 1), 0.5)
mesh = trimesh.Trimesh(vertices=v, faces=f)
print("mesh", len(f) > 0, mesh.is_watertight)
os.makedirs("sfm", exist_ok=True)
rec = pycolmap.Reconstruction()
rec.write("sfm")
print("colmap", sorted(os.listdir("sfm"))[:1], rec.num_images())
out = subprocess.run(["ffmpeg", "-hide_banner", "-version"], capture_output=True, text=True)
print("ffmpeg", out.returncode, out.stdout.split()[:2])
print("uid", os.getuid())
"""


@pytest.fixture(scope="module")
def model_images() -> Iterator[tuple[ModelImage, ...]]:
    """The CPU model images, built by kernels.build unless already current."""
    probe = subprocess.run(["docker", "info"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip("no Docker engine reachable")
    assert build.main(["models"]) == 0, "the model image build failed (see captured output)"
    yield CPU_MODELS


@pytest.fixture
async def started(manager: FakeManager, harness: AgentHarness) -> AsyncIterator[FakeManager]:
    await harness.start()
    await manager.next_join()
    yield manager


async def _execute(manager: FakeManager, kernel_id: str, code: str) -> ExecuteResult:
    reply = await manager.call(Execute(kernel_id=kernel_id, run_id=uuid.uuid4().hex,
                                       mode="query", code=code, flush_timeout=30.0),
                               timeout=120.0)
    assert isinstance(reply, ExecuteResult), reply
    return reply


@pytest.mark.parametrize("model", CPU_MODELS, ids=lambda m: m.model)
async def test_a_session_of_the_model_image_runs_torch_colmap_meshes_and_ffmpeg(
        model: ModelImage, model_images: tuple[ModelImage, ...], started: FakeManager,
        harness: AgentHarness) -> None:
    manager = started
    reply = await manager.call(harness.create_msg(
        image=model.tag, slots={"cpu": "2", "mem": str(2 << 30)}), timeout=120.0)
    assert isinstance(reply, KernelCreated), reply
    (info,) = await harness.containers()
    assert any(opt.startswith("seccomp=") for opt in info["HostConfig"]["SecurityOpt"])
    assert info["HostConfig"]["CapDrop"] == ["ALL"]
    res = await _execute(manager, reply.kernel_id, PROBE)
    out = "".join(d for k, d in res.console if k == "stdout")
    err = "".join(d for k, d in res.console if k == "stderr")
    assert (res.status, res.exit_code) == ("finished", 0), err
    lines = dict(line.split(" ", 1) for line in out.splitlines())
    assert lines["torch"].startswith("1.13") and lines["torch"].endswith(" 2 True")
    assert lines["mesh"] == "True True"
    assert lines["colmap"] == "['cameras.bin'] 0"
    assert lines["ffmpeg"] == "0 ['ffmpeg', 'version']"
    assert lines["uid"] == str(KERNEL_UID)


@pytest.mark.parametrize("model", CPU_MODELS, ids=lambda m: m.model)
def test_the_image_carries_the_atlas_labels_and_its_recipe_hash(
        model: ModelImage, model_images: tuple[ModelImage, ...]) -> None:
    config = json.loads(subprocess.run(["docker", "image", "inspect", model.tag],
                                       capture_output=True, text=True, check=True).stdout)[0]
    labels = config["Config"]["Labels"]
    for key, value in model.labels().items():
        assert labels[key] == value
    assert json.loads(labels["kraken.atlas.outputs"]) == dict(model.outputs)
    torch_hash = build.image_hash(build.TORCH_IMAGE) or ""
    assert labels[build.HASH_LABEL] == build.model_context(model).digest(torch_hash)
    assert config["Config"]["User"] == "work"
