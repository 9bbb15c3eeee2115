"""Rich output for user code: ``from kernels.runner import media``.

``media.html("<b>hi</b>")`` emits a ``["html", str]`` console item and
``media.show("image/png", data)`` a ``["media", [mime, data]]`` item (seed 004
§2.9.5). Outside the runner (no console writer installed) both print a plain note.
"""
from __future__ import annotations

import base64
import sys
from typing import Any


def _emit(kind: str, data: Any) -> None:
    emit = getattr(sys.stdout, "emit_item", None)
    if emit is None:
        print(f"[{kind} output is shown only in a Kraken session]")
    else:
        emit(kind, data)


def html(markup: str) -> None:
    """Show an HTML fragment."""
    _emit("html", str(markup))


def show(mime: str, data: str | bytes) -> None:
    """Show media of type ``mime``; bytes are sent base64-encoded (e.g. images)."""
    if isinstance(data, bytes):
        data = base64.b64encode(data).decode("ascii")
    _emit("media", [mime, data])
