"""Tar archives for tests: hostile members (links, devices, ``..``) built in memory."""
from __future__ import annotations

import io
import tarfile


def tar_bytes(members: list[tuple[str, bytes, bytes]]) -> bytes:
    """(name, tar type, data or link name) → an uncompressed tar archive."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.REGTYPE:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                info.linkname = data.decode()
                tar.addfile(info)
    return buf.getvalue()
