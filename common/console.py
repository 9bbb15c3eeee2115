"""The one rule for console output held in memory (seed 004 §2.10.2 console items).

Console items are ``[kind, data]`` pairs: ``stdout``/``stderr`` text, ``media``
``[mime, data]``, ``html``, ``log`` and whatever a kernel invents. A ``ConsoleWindow``
gathers the items one execute call returns, and admits an item only while

* its stream stays within ``MAX_STREAM_CHARS`` characters (stdout and stderr, each), and
* the bytes it holds stay within the room its owner grants (a run's and its kernel's
  budget on the agent, the response budget on the manager).

Text is truncated to what fits; any other item is kept whole or dropped whole. What
is dropped is counted per kind in bytes and reported with the result (``dropped``
and a closing stderr note), never silently. Contiguous text of one kind is merged
by joining its pieces once, so gathering is linear in the bytes produced.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from common.limits import MAX_STREAM_CHARS

ConsoleItem = list[Any]
TEXT_KINDS = frozenset({"stdout", "stderr"})
INVALID_KIND = "invalid"  # items that are not [str, data] pairs
_SCALAR_BYTES = 8


def data_size(data: Any) -> int:
    """Bytes ``data`` takes on the wire, near enough: UTF-8 text, raw bytes, 8 per scalar.

    Iterative, so a deeply nested item from a hostile runner cannot exhaust the stack.
    """
    total, stack = 0, [data]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            total += len(value) if value.isascii() else len(value.encode("utf-8", "replace"))
        elif isinstance(value, (bytes, bytearray)):
            total += len(value)
        elif isinstance(value, (list, tuple)):
            total += 1
            stack.extend(value)
        elif isinstance(value, dict):
            total += 1
            stack.extend(value.keys())
            stack.extend(value.values())
        else:
            total += _SCALAR_BYTES
    return total


def merge_dropped(into: dict[str, int], more: Any) -> None:
    """Add the counts of ``more`` (a ``{kind: bytes}`` map, untrusted) to ``into``."""
    if not isinstance(more, dict):
        return
    for kind, n in more.items():
        if isinstance(kind, str) and isinstance(n, int) and n > 0:
            into[kind] = into.get(kind, 0) + n


def dropped_note(dropped: dict[str, int]) -> ConsoleItem:
    """The stderr item that tells a user (and any client) what was dropped."""
    parts = ", ".join(f"{n:,} bytes of {kind}" for kind, n in sorted(dropped.items()))
    return ["stderr", f"\n[kraken: output dropped: {parts}; a call returns at most "
                      f"{MAX_STREAM_CHARS:,} characters of stdout and of stderr, and a run "
                      "buffers a bounded number of bytes between two calls]\n"]


class ConsoleWindow:
    """The console items of one execute response, within a byte budget."""

    __slots__ = ("_items", "size", "_chars", "dropped")

    def __init__(self) -> None:
        self._items: list[list[Any]] = []  # text items hold a list of pieces until taken
        self.size = 0
        self._chars = dict.fromkeys(TEXT_KINDS, 0)
        self.dropped: dict[str, int] = {}

    def __bool__(self) -> bool:
        return bool(self._items or self.dropped)

    def add(self, item: Any, room: int) -> int:
        """Admit ``item`` within ``room`` bytes (and the per-call text limit).

        Returns the bytes now held for it; what does not fit is counted as dropped.
        """
        if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str)):
            self._drop(INVALID_KIND, data_size(item))
            return 0
        kind, data = item
        size = data_size(data)
        if kind in TEXT_KINDS and isinstance(data, str):
            return self._add_text(kind, data, size, room)
        if size > room:
            self._drop(kind, size)
            return 0
        self._items.append([kind, data])
        self.size += size
        return size

    def _add_text(self, kind: str, text: str, size: int, room: int) -> int:
        keep = min(len(text), MAX_STREAM_CHARS - self._chars[kind])
        if size > room:  # a character takes at most 4 bytes in UTF-8
            keep = min(keep, room if text.isascii() else room // 4)
        if keep < len(text):
            text, cut = text[:max(keep, 0)], text[max(keep, 0):]
            self._drop(kind, data_size(cut))
            size = data_size(text)
        if not text:
            return 0
        self._chars[kind] += len(text)
        if self._items and self._items[-1][0] == kind and isinstance(self._items[-1][1], list):
            self._items[-1][1].append(text)
        else:
            self._items.append([kind, [text]])
        self.size += size
        return size

    def _drop(self, kind: str, size: int) -> None:
        if size > 0:
            self.dropped[kind] = self.dropped.get(kind, 0) + size

    def append_note(self, text: str) -> None:
        """A note from Kraken itself (the run failed, …): outside every limit, it is short."""
        self._items.append(["stderr", [text]])
        self.size += len(text)

    def note_dropped(self, more: Any) -> None:
        """Count what an earlier stage (the runner, the agent) reported as dropped."""
        merge_dropped(self.dropped, more)

    def items(self) -> list[ConsoleItem]:
        """The items, contiguous text merged, and a closing note if anything was dropped."""
        out: list[ConsoleItem] = [
            [kind, "".join(data)] if kind in TEXT_KINDS and isinstance(data, list)
            else [kind, data] for kind, data in self._items]
        if self.dropped:
            out.append(dropped_note(self.dropped))
        return out


def cap_console(items: Iterable[Any], room: int,
                dropped: Any = None) -> tuple[list[ConsoleItem], dict[str, int]]:
    """Apply the rule to a whole console list (the manager's per-response cap)."""
    window = ConsoleWindow()
    for item in items:
        room -= window.add(item, room)
    window.note_dropped(dropped)
    return window.items(), window.dropped
