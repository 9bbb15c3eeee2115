"""The model images' recipes: generated Dockerfiles, contract labels, pinned wheels, hashes."""
from __future__ import annotations

import contextlib
import json
import shlex
import shutil
from pathlib import Path

import pytest

from kernels import build, model_images, wheels
from kernels.model_images import CPU_MODELS, GAUSSIAN_SPLATTING, GAUSSIAN_SPLATTING_CUDA, NERF2MESH

HASH = "0" * 64


def dockerfile_of(ctx: build.Context) -> str:
    return dict(ctx.generated)["Dockerfile"].decode()


def labels_in(dockerfile: str) -> dict[str, str]:
    """Every LABEL key=value of a Dockerfile, parsed with shell quoting as Docker does."""
    text = dockerfile.replace("\\\n", " ")
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("LABEL "):
            for word in shlex.split(line[len("LABEL "):]):
                key, value = word.split("=", 1)
                out[key] = value
    return out


@pytest.mark.parametrize("model", [*CPU_MODELS, GAUSSIAN_SPLATTING_CUDA], ids=str)
def test_labels_follow_the_contract(model: model_images.ModelImage) -> None:
    labels = labels_in(dockerfile_of(build.model_context(model)))
    assert labels == model.labels()
    assert labels["kraken.atlas.model"] == model.model
    assert labels["kraken.atlas.model-id"].isdigit()
    assert labels["kraken.atlas.entry"] == "python3 -m kernels.models.run"
    assert labels["kraken.atlas.gpu"] in ("optional", "required", "none")
    outputs = json.loads(labels["kraken.atlas.outputs"])
    assert all(isinstance(v, str) and "/" not in v for v in outputs.values())
    assert labels["ai.backend.maxmem"] == "8g"
    assert "batch" in labels["ai.backend.features"].split()
    assert "OMP_NUM_THREADS" in labels["ai.backend.envs.corecount"].split(",")


def test_the_contract_values_of_each_model() -> None:
    assert GAUSSIAN_SPLATTING.labels()["kraken.atlas.outputs"] == '{"1":"point_cloud.ply"}'
    assert (GAUSSIAN_SPLATTING.tag, GAUSSIAN_SPLATTING.model_id) == \
        ("kraken/gaussian-splatting:latest", "2")
    assert json.loads(NERF2MESH.labels()["kraken.atlas.outputs"]) == \
        {"1": "mesh_1.glb", "2": "mesh_0.glb", "3": "turntable.gif"}
    assert (NERF2MESH.tag, NERF2MESH.model_id) == ("kraken/nerf2mesh:latest", "1")
    cuda = GAUSSIAN_SPLATTING_CUDA.labels()
    assert (cuda["kraken.atlas.model"], cuda["kraken.atlas.gpu"]) == \
        ("gaussian-splatting", "required")
    assert cuda["ai.backend.nvidia.enabled"] == "yes"
    with pytest.raises(ValueError, match="gpu must be one of"):
        model_images.ModelImage("m", "9", "t", "torch", "sometimes", ()).labels()


def test_a_model_image_is_the_runner_and_the_model_code_on_its_root() -> None:
    ctx = build.model_context(GAUSSIAN_SPLATTING)
    names = {arc for _, arc in ctx.files}
    assert {"opt/kraken/kernels/runner/__main__.py", "opt/kraken/common/msg_runner.py",
            "opt/kraken/kernels/models/__init__.py"} <= names
    assert not any("__pycache__" in n or "agent/" in n or "manager/" in n for n in names)
    text = dockerfile_of(ctx)
    assert text.splitlines()[1] == "FROM kraken/torch:bookworm"
    assert dockerfile_of(build.model_context(GAUSSIAN_SPLATTING_CUDA)).splitlines()[1] == \
        "FROM kraken/torch:cuda"
    # The shared runner part, written once: the same lines as the python image's.
    head = (build.IMAGES / "common" / "runner-head.dockerfile").read_text()
    assert head in text and head in dockerfile_of(build.python_context())
    assert text.rstrip().endswith('CMD ["python3", "-m", "kernels.runner"]')
    assert "USER work" in text and "WORKDIR /home/work" in text


def _fake_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the sources a model context reads, so that tests may edit them."""
    for rel in ["kernels/runner", "kernels/models"]:
        shutil.copytree(build.REPO / rel, tmp_path / rel,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for rel in build.RUNNER_SOURCES:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(build.REPO / rel, tmp_path / rel)
    shutil.copytree(build.IMAGES, tmp_path / "images")
    monkeypatch.setattr(build, "REPO", tmp_path)
    monkeypatch.setattr(build, "MODEL_CODE", tmp_path / "kernels/models")
    monkeypatch.setattr(build, "IMAGES", tmp_path / "images")
    return tmp_path


def test_hash_follows_the_model_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = _fake_repo(tmp_path, monkeypatch)
    before = build.model_context(NERF2MESH).digest("torch1")
    assert build.model_context(NERF2MESH).digest("torch1") == before
    assert build.model_context(NERF2MESH).digest("torch2") != before
    new = repo / "kernels/models/nerf2mesh/train.py"
    new.parent.mkdir(parents=True, exist_ok=True)
    new.write_text("STEPS = 1\n")
    ctx = build.model_context(NERF2MESH)
    assert "opt/kraken/kernels/models/nerf2mesh/train.py" in {arc for _, arc in ctx.files}
    after = ctx.digest("torch1")
    assert after != before
    new.write_text("STEPS = 2\n")
    assert build.model_context(NERF2MESH).digest("torch1") != after


def test_hash_follows_a_wheel_pin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_repo(tmp_path, monkeypatch)
    before = build.ROOTS["torch"].context().digest()
    assert "torch/wheels.txt" in {arc for _, arc in build.ROOTS["torch"].context().files}
    pins = tmp_path / "images/torch/wheels.txt"
    pins.write_text(pins.read_text().replace("trimesh==5.2.0", "trimesh==5.2.1"))
    assert build.ROOTS["torch"].context().digest() != before


def test_base_recipe_and_hash_are_unchanged_by_the_new_roots() -> None:
    ctx = build.base_context()
    assert sorted(arc for _, arc in ctx.files) == ["dpkg-excludes.txt", "image.conf",
                                                   "packages.txt"]


def test_torch_rootfs_call(tmp_path: Path) -> None:
    root = build.ROOTS["torch"]
    cmd = build._mmdebstrap_cmd(tmp_path / "r.tar", ["deb http://m.example x main"], False,
                                root, site=tmp_path / "site", debs=tmp_path / "debs")
    includes = next(a for a in cmd if a.startswith("--include=")).split("=", 1)[1].split(",")
    for pkg in ("python3-torch", "python3-numpy", "python3-pil", "ffmpeg", "python3-zmq",
                "python3-msgpack", "tini", "passwd"):
        assert pkg in includes
    assert "python3-notebook" not in includes and "gcc" not in includes
    hooks = [a for a in cmd if a.startswith("--customize-hook=")]
    assert hooks.index(f"--customize-hook=sync-out /var/cache/apt/archives {tmp_path}/debs") < \
        hooks.index('--customize-hook=rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*')
    assert f"--customize-hook=sync-in {tmp_path}/site {build.SITE_PACKAGES}" in hooks
    assert "--dpkgopt=path-exclude=/usr/share/doc/*" in cmd  # base's filters apply too
    assert "--dpkgopt=path-exclude=/usr/lib/libtorch-test/*" in cmd


def test_gpu_root_recipe_is_complete(tmp_path: Path) -> None:
    root = build.ROOTS["torch-cuda"]
    pins = {p.name.lower(): p for p in wheels.read_pins(build.IMAGES / str(root.wheels))}
    for name in ("torch", "gsplat", "nvidia-cuda-nvcc", "nvidia-cuda-runtime", "ninja", "numpy",
                 "pycolmap", "pymcubes", "trimesh", "scipy"):
        assert name in pins, name
    cmd = build._mmdebstrap_cmd(tmp_path / "r.tar", [], True, root, site=tmp_path / "site")
    includes = next(a for a in cmd if a.startswith("--include=")).split("=", 1)[1].split(",")
    assert {"g++", "python3-dev", "ffmpeg", "python3-zmq", "tini"} <= set(includes)
    assert "python3-torch" not in includes and "python3-numpy" not in includes
    assert any("upload" in a and "customize.sh" in a for a in cmd)
    conf = (build.IMAGES / root.conf).read_text()
    assert "ENV CUDA_HOME=/usr/local/lib/python3.11/dist-packages/nvidia/cu13" in conf
    assert "nvidia/cu13/bin:" in conf
    names = {arc for _, arc in root.context().files}
    assert {"torch-cuda/wheels.txt", "torch-cuda/customize.sh", "torch-cuda/image.conf"} <= names


def test_pins_must_carry_a_version_and_a_hash(tmp_path: Path) -> None:
    good = tmp_path / "ok.txt"
    good.write_text(f"# c\nfoo==1.0 --hash=sha256:{'a' * 64}  # why\n\n"
                    f"Bar_baz==2 --hash=sha256:{'b' * 64} --hash=sha256:{'c' * 64}\n")
    assert [(p.name, p.version, len(p.hashes)) for p in wheels.read_pins(good)] == \
        [("foo", "1.0", 1), ("Bar_baz", "2", 2)]
    for bad in ("foo", "foo>=1 --hash=sha256:" + "a" * 64, "foo==1", "foo==1 --hash=md5:x"):
        path = tmp_path / "bad.txt"
        path.write_text(bad + "\n")
        with pytest.raises(wheels.WheelError, match=r"bad.txt:1: expected"):
            wheels.read_pins(path)


def test_cached_wheels_are_not_downloaded_again(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "wheels"
    cache.mkdir()
    (cache / "foo-1.0-py3-none-any.whl").write_bytes(b"wheel bytes")
    digest = wheels._sha256(cache / "foo-1.0-py3-none-any.whl")
    req = tmp_path / "wheels.txt"
    req.write_text(f"foo==1.0 --hash=sha256:{digest}\nbar==2.0 --hash=sha256:{'d' * 64}\n")
    calls: list[list[str]] = []
    monkeypatch.setattr(wheels, "_pip", lambda args, what: calls.append(list(args)))
    assert [p.name for p in wheels.missing(wheels.read_pins(req), cache)] == ["bar"]
    with pytest.raises(wheels.WheelError, match="no wheel matching the hash of bar"):
        wheels.fetch(req, cache)
    assert calls and calls[0][0] == "download" and "--require-hashes" in calls[0]
    req.write_text(f"foo==1.0 --hash=sha256:{digest}\n")
    calls.clear()
    assert wheels.fetch(req, cache) == 0 and calls == []


def test_the_real_pins_parse() -> None:
    names = [p.name for p in wheels.read_pins(build.IMAGES / "torch" / "wheels.txt")]
    assert names == ["pycolmap", "PyMCubes", "trimesh", "scipy"]


def test_cli_knows_the_new_targets(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    monkeypatch.setattr(build, "_build_lock", contextlib.nullcontext)  # no real build waits

    def record(name: str, *args: object, **kw: object) -> str:
        seen.append(name)
        return "h"

    monkeypatch.setattr(build, "ensure_root", record)
    monkeypatch.setattr(build, "ensure_python", lambda **kw: record("python"))
    monkeypatch.setattr(build, "_ensure_layered", record)
    assert build.main(["models"]) == 0
    assert seen == ["torch", "kraken/gaussian-splatting:latest", "kraken/nerf2mesh:latest"]
    seen.clear()
    assert build.main(["all"]) == 0
    assert seen[0] == "python" and "kraken/nerf2mesh:latest" in seen
    seen.clear()
    assert build.main(["gpu"]) == 0
    assert seen == ["torch-cuda", "kraken/gaussian-splatting:cuda"]
