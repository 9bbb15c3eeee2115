"""The ordered output queue between producers (any thread) and the I/O thread.

Producers append console items and whole messages; the first append after a
drain writes one byte to a pipe the I/O thread polls, so output leaves with no
sleep or polling delay. ``drain`` turns the queue into wire messages, merging
contiguous console items of one run into one ``ConsoleOutput`` and contiguous
text of one kind ("stdout"/"stderr") into one item, keeping their order.
"""
from __future__ import annotations

import os
import threading
from collections import deque
from typing import Any

from common.codec import Message
from common.msg_runner import ConsoleItem, ConsoleOutput

_TEXT_KINDS = frozenset({"stdout", "stderr"})


class Outbox:
    """A thread-safe FIFO of outgoing messages with a wakeup file descriptor."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: deque[Message | tuple[str, str, Any]] = deque()
        self._signalled = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

    @property
    def wake_fd(self) -> int:
        """Readable whenever entries are waiting; poll it in the I/O thread."""
        return self._wake_r

    def console(self, run_id: str, kind: str, data: Any) -> None:
        """Queue one console item (``[kind, data]``) of run ``run_id``."""
        self._append((run_id, kind, data))

    def message(self, msg: Message) -> None:
        """Queue a whole message, ordered after everything queued before it."""
        self._append(msg)

    def wake(self) -> None:
        """Wake the I/O thread without queueing anything (e.g. to stop it)."""
        with self._lock:
            self._signal_locked()

    def _append(self, entry: Message | tuple[str, str, Any]) -> None:
        with self._lock:
            self._entries.append(entry)
            self._signal_locked()

    def _signal_locked(self) -> None:
        if not self._signalled:
            self._signalled = True
            try:
                os.write(self._wake_w, b"\0")
            except BlockingIOError:  # the pipe is full, so it is readable anyway
                pass

    def drain(self) -> list[Message]:
        """Take everything queued, coalesced into wire messages in order."""
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        with self._lock:
            self._signalled = False
            entries = list(self._entries)
            self._entries.clear()
        return _coalesce(entries)

    def close(self) -> None:
        os.close(self._wake_r)
        os.close(self._wake_w)


def _coalesce(entries: list[Message | tuple[str, str, Any]]) -> list[Message]:
    out: list[Message] = []
    run_id: str | None = None
    items: list[ConsoleItem] = []
    for entry in entries:
        if isinstance(entry, Message):
            if items:
                out.append(ConsoleOutput(run_id=run_id or "", items=items))
                run_id, items = None, []
            out.append(entry)
            continue
        entry_run, kind, data = entry
        if items and entry_run != run_id:
            out.append(ConsoleOutput(run_id=run_id or "", items=items))
            items = []
        run_id = entry_run
        if items and kind in _TEXT_KINDS and items[-1][0] == kind:
            items[-1][1] += data
        else:
            items.append([kind, data])
    if items:
        out.append(ConsoleOutput(run_id=run_id or "", items=items))
    return out
