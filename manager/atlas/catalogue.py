"""The model catalogue: the models the job API knows (``models.toml``: the seed's ids,
aliases and upload limits) merged with the models installed as kernel images (their
``kraken.atlas.*`` labels). Adding a model = adding an image, no code.

Pure: the image rows come in as (name, labels) pairs (manager.services.images).
"""
from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from common.errors import ModelNotInstalled, NotFound
from common.slots import parse_bytes
from manager.config import AtlasLimitsConfig

DATA_FILE = Path(__file__).with_name("models.toml")
LABEL = "kraken.atlas."
GPU_MODES = frozenset({"none", "optional", "required"})


@dataclass(frozen=True, slots=True)
class Limits:
    """What an uploaded video must be (None: no bound)."""

    formats: tuple[str, ...] = ("mp4",)
    min_seconds: float | None = None
    max_seconds: float | None = None
    min_bytes: int | None = None
    max_bytes: int | None = None
    min_resolution: tuple[int, int] | None = None  # (long side, short side)
    max_resolution: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class Installed:
    """What an image's labels say about running its model."""

    image: str
    entry: str
    gpu: str
    outputs: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Model:
    name: str
    id: int
    aliases: tuple[str, ...] = ()
    input: str = "video"
    epoch: bool = True  # the upload carries Epoch (1-100)
    training_time: str = "10m"
    limits: Limits = Limits()
    installed: Installed | None = None

    def public(self) -> dict[str, Any]:
        lim = self.limits
        return {"id": str(self.id), "name": self.name, "aliases": list(self.aliases),
                "input": self.input, "installed": self.installed is not None,
                "trainingTimePerJob": self.training_time,
                "outputs": dict(self.installed.outputs) if self.installed else {},
                "limits": {"formats": list(lim.formats), "minSeconds": lim.min_seconds,
                           "maxSeconds": lim.max_seconds, "minBytes": lim.min_bytes,
                           "maxBytes": lim.max_bytes,
                           "minResolution": list(lim.min_resolution or []) or None,
                           "maxResolution": list(lim.max_resolution or []) or None}}


def _size(value: Any) -> int | None:
    return None if value is None else parse_bytes(str(value))


def _res(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    long, short = (int(v) for v in value)
    return max(long, short), min(long, short)


def _limits(raw: Mapping[str, Any]) -> Limits:
    return Limits(formats=tuple(str(f).lower() for f in raw.get("formats", ("mp4",))),
                  min_seconds=raw.get("min_seconds"), max_seconds=raw.get("max_seconds"),
                  min_bytes=_size(raw.get("min_bytes")), max_bytes=_size(raw.get("max_bytes")),
                  min_resolution=_res(raw.get("min_resolution")),
                  max_resolution=_res(raw.get("max_resolution")))


def known_models(text: str) -> list[Model]:
    """The models of a ``models.toml`` text."""
    out = []
    for raw in tomllib.loads(text).get("model", []):
        out.append(Model(name=str(raw["name"]), id=int(raw["id"]),
                         aliases=tuple(str(a) for a in raw.get("aliases", ())),
                         input=str(raw.get("input", "video")), epoch=bool(raw.get("epoch", True)),
                         training_time=str(raw.get("training_time", "10m")),
                         limits=_limits(raw)))
    return out


def installed_from_labels(image: str, labels: Mapping[str, Any]) -> tuple[str, int, Installed]:
    """(model name, model id, Installed) from an image's labels, or ValueError."""
    name = str(labels.get(LABEL + "model", "")).strip()
    if not name:
        raise ValueError(f"{image}: no {LABEL}model label")
    model_id = int(str(labels.get(LABEL + "model-id", "0")))
    entry = str(labels.get(LABEL + "entry", "")).strip()
    if not entry:
        raise ValueError(f"{image}: no {LABEL}entry label")
    gpu = str(labels.get(LABEL + "gpu", "none")).strip().lower()
    if gpu not in GPU_MODES:
        raise ValueError(f"{image}: {LABEL}gpu must be one of {sorted(GPU_MODES)}")
    outputs = orjson.loads(str(labels.get(LABEL + "outputs", "{}")))
    if not isinstance(outputs, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and "/" not in v and v not in ("", ".", "..")
            for k, v in outputs.items()):
        raise ValueError(f"{image}: {LABEL}outputs must map codes to plain file names")
    return name, model_id, Installed(image, entry, gpu, dict(outputs))


def _override(limits: Limits, cfg: AtlasLimitsConfig | None) -> Limits:
    """The catalogue's limits with the keys the config sets replaced."""
    if cfg is None:
        return limits
    given = {k: v for k, v in cfg.model_dump().items() if v is not None}
    parsed = _limits(given)
    return dataclasses.replace(limits, **{k: getattr(parsed, k) for k in given})


class Catalogue:
    """Every model, by name or alias (case-insensitive)."""

    def __init__(self, models: Iterable[Model]) -> None:
        self.models = sorted(models, key=lambda m: m.id)
        self._by: dict[str, Model] = {}
        for m in self.models:
            for key in (m.name, *m.aliases):
                self._by[key.lower()] = m

    @classmethod
    def build(cls, known: Iterable[Model], images: Iterable[tuple[str, Mapping[str, Any]]],
              limits: Mapping[str, AtlasLimitsConfig] | None = None) -> Catalogue:
        """Known models, each marked installed when an image names it; an image naming
        an unknown model adds it (no upload limits beyond the formats)."""
        by_name = {m.name.lower(): m for m in known}
        for image, labels in sorted(images):
            try:
                name, model_id, inst = installed_from_labels(image, labels)
            except (ValueError, TypeError, orjson.JSONDecodeError):
                continue  # a mislabelled image is not a model (the image list shows it)
            base = by_name.get(name.lower()) or Model(name=name, id=model_id)
            if base.installed is None or _prefer(inst, base.installed):
                by_name[name.lower()] = dataclasses.replace(base, installed=inst)
        overrides = {k.lower(): v for k, v in (limits or {}).items()}
        return cls(dataclasses.replace(m, limits=_override(m.limits, overrides.get(k)))
                   for k, m in by_name.items())

    def get(self, name: str) -> Model:
        model = self._by.get(name.lower())
        if model is None:
            raise NotFound(f"no model {name!r}; the models are "
                           + ", ".join(m.name for m in self.models))
        return model

    def by_id(self, model_id: str) -> Model:
        for m in self.models:
            if str(m.id) == model_id or m.name.lower() == model_id.lower():
                return m
        raise NotFound(f"no model with id {model_id!r}")

    def installed(self, name: str) -> tuple[Model, Installed]:
        model = self.get(name)
        if model.installed is None:
            raise ModelNotInstalled(
                f"the model {model.name!r} is known but not installed on this cluster (no "
                f"kernel image carries the label kraken.atlas.model={model.name}); see "
                "GET /atlas/models")
        return model, model.installed


def _prefer(new: Installed, old: Installed) -> bool:
    """Between two images of one model, the ``:latest`` one, else the first by name."""
    return new.image.endswith(":latest") and not old.image.endswith(":latest")


def load_known() -> list[Model]:
    return known_models(DATA_FILE.read_text())
