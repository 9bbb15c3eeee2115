"""Resolving a requested ``lang`` to an image agents hold, and sizing a session.

``lang`` may be ``python``, ``python:3.11``, ``kraken/python`` or a full reference
such as ``registry:5000/kraken/python:3.11``. A bare name matches the basename of
an image repository; a name with ``/`` must match the repository's tail path. The
tag defaults to ``latest``. Sizing a session is ``common.slots.granted_slots``.
"""
from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from manager.db.tables import agents, images

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


async def labelled_images(conn: AsyncConnection, prefix: str) -> list[tuple[str, dict[str, Any]]]:
    """(image name, labels) of every image some agent holds whose labels include one
    starting with ``prefix`` (one row per name; agents agree on an image's labels)."""
    rows = (await conn.execute(sa.select(images.c.name, images.c.labels)
                               .order_by(images.c.name, images.c.agent_id))).all()
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        labels = row.labels if isinstance(row.labels, dict) else {}
        if row.name not in out and any(str(k).startswith(prefix) for k in labels):
            out[row.name] = labels
    return sorted(out.items())


async def has_gpu_slots(conn: AsyncConnection) -> bool:
    """Whether any alive agent offers a GPU slot (``cuda.device`` or ``cuda.shares``)."""
    rows = (await conn.execute(sa.select(agents.c.available_slots)
                               .where(agents.c.status == "ALIVE"))).all()
    return any(float(v or 0) > 0 for r in rows for k, v in (r.available_slots or {}).items()
               if str(k).startswith("cuda"))
