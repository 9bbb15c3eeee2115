"""The event log of one streamed run: what ``stream-event`` numbers and replays.

A run started by an execute stream turns its console batches and milestones into
Execution Result Objects (seed 004 §2.9.6), numbered ``seq`` 1, 2, 3… in a ``RunLog``.
Streams read the log with a cursor: a stream that resumes (another manager replica, after
the first stream dropped) replays exactly the events after the last one its client saw,
then follows live ones; no stream holds a copy. The log is bounded in bytes: beyond its
cap the oldest events go (never the last one), and a stream that resumes from before
them gets a note saying how many it missed. A finished log lingers
``common.streams.EXECUTE_LOG_LINGER`` seconds, then is freed (``KernelRuns``).
"""
from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass
from typing import Any

from common.console import ConsoleItem
from common.streams import WINDOW_BYTES, cost

EVENT_CONSOLE_BYTES = WINDOW_BYTES // 2  # console text in one event, so it fits a window


@dataclass(frozen=True)
class LoggedEvent:
    seq: int
    body: dict[str, Any]
    size: int


class RunLog:
    """The numbered events of one run, oldest first."""

    def __init__(self, run_id: str, cap_bytes: int) -> None:
        self.run_id = run_id
        self.cap_bytes = cap_bytes
        self.events: collections.deque[LoggedEvent] = collections.deque()
        self.next_seq = 1
        self.bytes = 0
        self.done = False  # the final event is in
        self.freed = False  # expired, or its kernel is gone
        self.expiry: asyncio.TimerHandle | None = None
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def first_seq(self) -> int:
        return self.events[0].seq if self.events else self.next_seq

    @property
    def last_seq(self) -> int:
        return self.next_seq - 1

    def get(self, seq: int) -> LoggedEvent | None:
        index = seq - self.first_seq
        return self.events[index] if 0 <= index < len(self.events) else None

    def append(self, body: dict[str, Any]) -> None:
        """Log one event, then drop the oldest ones beyond the cap."""
        size = cost(body)
        self.events.append(LoggedEvent(self.next_seq, body, size))
        self.next_seq += 1
        self.bytes += size
        while self.bytes > self.cap_bytes and len(self.events) > 1:
            self.evict_oldest()
        self._wake()

    def evict_oldest(self) -> int:
        """Drop the oldest event unless it is the last one; returns the bytes freed."""
        if len(self.events) <= 1:
            return 0
        size = self.events.popleft().size
        self.bytes -= size
        return size

    def finish(self) -> None:
        self.done = True
        self._wake()

    def free(self) -> int:
        """Forget every event (expired, or the kernel is gone); returns the bytes freed."""
        freed, self.bytes = self.bytes, 0
        self.events.clear()
        self.freed = True
        if self.expiry is not None:
            self.expiry.cancel()
        self._wake()
        return freed

    def changed(self) -> asyncio.Future[None]:
        """Resolves at the next event, the end of the run, or when the log is freed."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        return fut

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)


def result_bodies(status: str, items: list[ConsoleItem], exit_code: int | None = None,
                  options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One milestone as Execution Result Objects: its console split into events of at most
    ``EVENT_CONSOLE_BYTES`` of text ("continued"), the last one carrying ``status``."""
    chunks: list[list[ConsoleItem]] = [[]]
    room = EVENT_CONSOLE_BYTES
    for kind, data in items:
        if not isinstance(data, str):
            chunks[-1].append([kind, data])
            continue
        raw = data.encode("utf-8", "replace")
        while len(raw) > room:
            piece = raw[:room].decode("utf-8", "ignore")  # whole characters only
            if piece:
                chunks[-1].append([kind, piece])
                raw = raw[len(piece.encode("utf-8")):]
            chunks.append([])
            room = EVENT_CONSOLE_BYTES
        if raw:
            chunks[-1].append([kind, raw.decode("utf-8")])
            room -= len(raw)
    bodies = [_body("continued", chunk) for chunk in chunks[:-1]]
    bodies.append(_body(status, chunks[-1], exit_code, options))
    return bodies


def _body(status: str, console: list[ConsoleItem], exit_code: int | None = None,
          options: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"status": status, "console": console, "exitCode": exit_code,
            "options": options, "files": []}


def with_gap_note(body: dict[str, Any], missed: int) -> dict[str, Any]:
    """``body`` preceded by a note that ``missed`` earlier events are no longer kept."""
    note = ["stderr", f"[kraken: {missed} earlier message(s) of this run are no longer "
                      "kept; the run's output held for a stream is bounded]\n"]
    return dict(body, console=[note, *body.get("console", [])])
