"""The ordered output queue between producers (any thread) and the I/O thread.

Producers append console items and whole messages; the first append after a
drain writes one byte to a pipe the I/O thread polls, so output leaves with no
sleep or polling delay. ``drain`` turns the queue into wire messages, merging
contiguous console items of one run into ``ConsoleOutput`` messages and contiguous
text of one kind ("stdout"/"stderr") into one item, keeping their order.

Bounded and linear (common/limits.py):

- the console data queued or drained but not yet sent is at most ``limit`` bytes
  (``RUNNER_QUEUE_BYTES``); an item beyond it is dropped (text: what does not fit),
  and so is any non-text item too large for one message. Each drop is counted per run
  and kind and reported in order, in the ``dropped`` field of a ``ConsoleOutput``;
- text pieces are joined once per item, never appended to a growing string, and a
  ``ConsoleOutput`` carries at most ``OUTPUT_DATA_BYTES`` of data (long text is split),
  so draining is linear in the bytes produced and every message fits the agent's
  ``MAX_OUTPUT_MESSAGE_BYTES``.

The I/O thread calls ``release`` with the size ``drain`` paired with a message once
that message has been handed to the socket.
"""
from __future__ import annotations

import os
import threading
from collections import deque
from typing import Any

from common.codec import Message
from common.console import TEXT_KINDS, data_size
from common.limits import OUTPUT_DATA_BYTES, RUNNER_QUEUE_BYTES, TEXT_CHUNK_CHARS
from common.msg_runner import ConsoleItem, ConsoleOutput

ITEM_OVERHEAD = 16  # msgpack framing of one [kind, data] item, counted toward a message


class _Dropped:
    """A queued marker: what was dropped for one run since the previous marker drained."""

    __slots__ = ("run_id", "counts")

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.counts: dict[str, int] = {}


_Entry = Message | tuple[str, str, Any, int] | _Dropped


class Outbox:
    """A thread-safe, bounded FIFO of outgoing messages with a wakeup file descriptor."""

    def __init__(self, limit: int = RUNNER_QUEUE_BYTES) -> None:
        self._lock = threading.Lock()
        self._entries: deque[_Entry] = deque()
        self._limit = limit
        self._held = 0  # console bytes queued or drained and not yet released
        self._marker: _Dropped | None = None  # the drop marker still in the queue
        self._signalled = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

    @property
    def wake_fd(self) -> int:
        """Readable whenever entries are waiting; poll it in the I/O thread."""
        return self._wake_r

    @property
    def held(self) -> int:
        """Console bytes queued or in flight (drained, not yet released)."""
        return self._held

    def console(self, run_id: str, kind: str, data: Any) -> None:
        """Queue one console item (``[kind, data]``) of run ``run_id``, if it fits."""
        size = data_size(data)
        with self._lock:
            room = self._limit - self._held
            if kind in TEXT_KINDS and isinstance(data, str):
                if size > room:  # keep what fits (a character is at most 4 bytes)
                    kept = data[:max(room if data.isascii() else room // 4, 0)]
                    kept_size = data_size(kept)
                    self._drop_locked(run_id, kind, size - kept_size)
                    data, size = kept, kept_size
                    if not data:
                        return
            elif size > room or size > OUTPUT_DATA_BYTES:
                self._drop_locked(run_id, kind, size)
                return
            self._held += size
            self._entries.append((run_id, kind, data, size))
            self._signal_locked()

    def message(self, msg: Message) -> None:
        """Queue a whole message, ordered after everything queued before it."""
        with self._lock:
            self._entries.append(msg)
            self._signal_locked()

    def release(self, size: int) -> None:
        """``size`` bytes of console data left the runner."""
        if size:
            with self._lock:
                self._held = max(self._held - size, 0)

    def wake(self) -> None:
        """Wake the I/O thread without queueing anything (e.g. to stop it)."""
        with self._lock:
            self._signal_locked()

    def _drop_locked(self, run_id: str, kind: str, size: int) -> None:
        marker = self._marker
        if marker is None or marker.run_id != run_id:
            marker = self._marker = _Dropped(run_id)
            self._entries.append(marker)
            self._signal_locked()
        marker.counts[kind] = marker.counts.get(kind, 0) + size

    def _signal_locked(self) -> None:
        if not self._signalled:
            self._signalled = True
            try:
                os.write(self._wake_w, b"\0")
            except BlockingIOError:  # the pipe is full, so it is readable anyway
                pass

    def drain(self) -> list[tuple[Message, int]]:
        """Take everything queued, as wire messages in order, each with the console
        bytes it carries (to ``release`` once sent)."""
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        with self._lock:
            self._signalled = False
            self._marker = None
            entries = list(self._entries)
            self._entries.clear()
        return coalesce(entries)

    def close(self) -> None:
        os.close(self._wake_r)
        os.close(self._wake_w)


class _Batch:
    """Assembles the ``ConsoleOutput`` messages of a drain, one run at a time."""

    def __init__(self) -> None:
        self.out: list[tuple[Message, int]] = []
        self.run_id = ""
        self.items: list[tuple[str, Any, bool]] = []  # (kind, data or text pieces, is_text)
        self.size = 0  # console data in ``items``
        self.wire = 0  # data plus framing, bounded by OUTPUT_DATA_BYTES
        self.dropped: dict[str, int] = {}

    def close(self) -> None:
        if self.items or self.dropped:
            items: list[ConsoleItem] = [[kind, "".join(data) if text else data]
                                        for kind, data, text in self.items]
            self.out.append((ConsoleOutput(run_id=self.run_id, items=items,
                                           dropped=self.dropped), self.size))
        self.items, self.size, self.wire, self.dropped = [], 0, 0, {}

    def _room_for(self, run_id: str, size: int) -> None:
        if run_id != self.run_id:
            self.close()
            self.run_id = run_id
        elif self.items and self.wire + size + ITEM_OVERHEAD > OUTPUT_DATA_BYTES:
            self.close()

    def console(self, run_id: str, kind: str, data: Any, size: int) -> None:
        if kind not in TEXT_KINDS or not isinstance(data, str):
            self._room_for(run_id, size)
            self._append(kind, data, False, size)
            return
        for start in range(0, len(data), TEXT_CHUNK_CHARS):
            piece = data[start:start + TEXT_CHUNK_CHARS] if len(data) > TEXT_CHUNK_CHARS else data
            piece_size = size if piece is data else data_size(piece)
            self._room_for(run_id, piece_size)
            last = self.items[-1] if self.items else None
            if last is not None and last[2] and last[0] == kind:
                last[1].append(piece)
                self.size += piece_size
                self.wire += piece_size
            else:
                self._append(kind, [piece], True, piece_size)

    def _append(self, kind: str, data: Any, text: bool, size: int) -> None:
        self.items.append((kind, data, text))
        self.size += size
        self.wire += size + ITEM_OVERHEAD

    def mark_dropped(self, marker: _Dropped) -> None:
        self._room_for(marker.run_id, 0)
        for kind, n in marker.counts.items():
            if n > 0:
                self.dropped[kind] = self.dropped.get(kind, 0) + n

    def message(self, msg: Message) -> None:
        self.close()
        self.run_id = ""
        self.out.append((msg, 0))


def coalesce(entries: list[_Entry]) -> list[tuple[Message, int]]:
    """Queued entries → wire messages; linear in the number of entries and bytes."""
    batch = _Batch()
    for entry in entries:
        if isinstance(entry, Message):
            batch.message(entry)
        elif isinstance(entry, _Dropped):
            batch.mark_dropped(entry)
        else:
            batch.console(*entry)
    batch.close()
    return batch.out
