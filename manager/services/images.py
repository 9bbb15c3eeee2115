"""Resolving a requested ``lang`` to an image agents hold, and sizing a session.

``lang`` may be ``python``, ``python:3.11``, ``kraken/python`` or a full reference
such as ``registry:5000/kraken/python:3.11``. A bare name matches the basename of
an image repository; a name with ``/`` must match the repository's tail path. The
tag defaults to ``latest``. Sizing a session is ``common.slots.granted_slots``.
"""
from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

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
