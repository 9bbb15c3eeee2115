"""The generation model images of issue 11 and the labels that make an image a model.

An installed model is a kernel image carrying ``kraken.atlas.*`` labels (the manager's
catalogue reads them); each model image here is built by ``python -m kernels.build`` from
a parent root image (Debian's CPU torch, or PyPI's CUDA torch for the opt-in GPU image)
with the runner and ``kernels/models`` copied in.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

LABEL_MODEL = "kraken.atlas.model"
LABEL_MODEL_ID = "kraken.atlas.model-id"
LABEL_ENTRY = "kraken.atlas.entry"
LABEL_GPU = "kraken.atlas.gpu"
LABEL_OUTPUTS = "kraken.atlas.outputs"
GPU_MODES = ("optional", "required", "none")
ENTRY = "python3 -m kernels.models.run"

# seed 004 §2.21.2 labels shared by every model image. The runner serves queries as in
# kraken/python; the product runs one batch command per job. maxmem is what a job at
# the largest input size needs (frames, SfM, training on the CPU).
KERNEL_LABELS = {
    "ai.backend.kernelspec": "1",
    "ai.backend.maxcores": "8",
    "ai.backend.maxmem": "8g",
    "ai.backend.timeout": "0",
    "ai.backend.mode": "query",
    "ai.backend.features": "query batch interrupt uid-match",
    "ai.backend.envs.corecount": "OPENBLAS_NUM_THREADS,OMP_NUM_THREADS",
    "ai.backend.base-distro": "debian12",
    "ai.backend.runtime-type": "python",
    "ai.backend.runtime-path": "/usr/bin/python3",
    "kraken.runner.ports": "2000,2001,2002",
}


@dataclass(frozen=True)
class ModelImage:
    """One model image: its tag, the root image it is layered on, its atlas labels."""

    model: str
    model_id: str
    tag: str
    root: str  # a key of kernels.build.ROOTS
    gpu: str
    outputs: tuple[tuple[str, str], ...]  # (output code, file name in outputs/)

    def labels(self) -> dict[str, str]:
        if self.gpu not in GPU_MODES:
            raise ValueError(f"{self.tag}: gpu must be one of {GPU_MODES}, not {self.gpu!r}")
        atlas = {
            LABEL_MODEL: self.model,
            LABEL_MODEL_ID: self.model_id,
            LABEL_ENTRY: ENTRY,
            LABEL_GPU: self.gpu,
            LABEL_OUTPUTS: json.dumps(dict(self.outputs), separators=(",", ":")),
        }
        if self.gpu == "required":
            atlas["ai.backend.nvidia.enabled"] = "yes"
        return {**KERNEL_LABELS, **atlas}


GAUSSIAN_SPLATTING = ModelImage(
    "gaussian-splatting", "2", "kraken/gaussian-splatting:latest", "torch", "none",
    (("1", "point_cloud.ply"),))
NERF2MESH = ModelImage(
    "nerf2mesh", "1", "kraken/nerf2mesh:latest", "torch", "none",
    (("1", "mesh_1.glb"), ("2", "mesh_0.glb"), ("3", "turntable.gif")))
GAUSSIAN_SPLATTING_CUDA = ModelImage(
    "gaussian-splatting", "2", "kraken/gaussian-splatting:cuda", "torch-cuda", "required",
    (("1", "point_cloud.ply"),))

CPU_MODELS = (GAUSSIAN_SPLATTING, NERF2MESH)
GPU_MODELS = (GAUSSIAN_SPLATTING_CUDA,)
