"""Resolving a requested ``lang`` to an image agents hold, and sizing a session.

``lang`` may be ``python``, ``python:3.11``, ``kraken/python`` or a full reference
such as ``registry:5000/kraken/python:3.11``. A bare name matches the basename of
an image repository; a name with ``/`` must match the repository's tail path. The
tag defaults to ``latest``.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from common.slots import CPU, GPU, MEM, parse_bytes

GIB = 2**30
MIB = 2**20
GIB_THRESHOLD = 32  # instanceMemory below this is GiB (client 18.12.3), else MiB (spec)


def split_reference(ref: str) -> tuple[str, str | None]:
    """``repo[:tag]`` → (repo, tag or None); a ``:`` before the last ``/`` is a port."""
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1:]
    return ref, None


def lang_matches(lang: str, image: str) -> bool:
    want_repo, want_tag = split_reference(lang)
    repo, tag = split_reference(image)
    if (want_tag or "latest") != (tag or "latest"):
        return False
    if "/" in want_repo:
        return repo == want_repo or repo.endswith("/" + want_repo)
    return repo.rsplit("/", 1)[-1] == want_repo


def resolve_image(lang: str, images: Iterable[str]) -> str | None:
    """The image reference ``lang`` names (exact match first), or None."""
    names = sorted(set(images))
    if lang in names:
        return lang
    for name in names:
        if lang_matches(lang, name):
            return name
    return None


def memory_bytes(value: float) -> int:
    """``instanceMemory`` in bytes: a value < 32 is GiB (client 18.12.3), else MiB (spec)."""
    if value < GIB_THRESHOLD:
        return int(Decimal(str(value)) * GIB)
    return int(Decimal(str(value)) * MIB)


@dataclass(frozen=True, slots=True)
class SlotRequest:
    cpu: float
    mem: int
    gpu: float = 0.0

    def capped(self, labels: Mapping[str, Any]) -> SlotRequest:
        """Cap cpu/mem by the image labels ``ai.backend.maxcores`` / ``ai.backend.maxmem``."""
        cpu, mem = self.cpu, self.mem
        if (maxcores := labels.get("ai.backend.maxcores")) is not None:
            try:
                cpu = min(cpu, float(maxcores))
            except ValueError:
                pass
        if (maxmem := labels.get("ai.backend.maxmem")) is not None:
            try:
                mem = min(mem, parse_bytes(str(maxmem)))
            except (ValueError, ArithmeticError):
                pass
        return SlotRequest(cpu=cpu, mem=mem, gpu=self.gpu)

    def as_floats(self) -> dict[str, float]:
        out = {CPU: self.cpu, MEM: float(self.mem)}
        if self.gpu > 0:
            out[GPU] = self.gpu
        return out

    def to_wire(self) -> dict[str, str]:
        out = {CPU: _num(self.cpu), MEM: str(self.mem)}
        if self.gpu > 0:
            out[GPU] = _num(self.gpu)
        return out


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def slots_to_floats(slots: Mapping[str, Any] | None) -> dict[str, float]:
    """A slot map from the wire / JSONB (decimal strings) as floats."""
    out: dict[str, float] = {}
    for key, value in (slots or {}).items():
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            continue
    return out
