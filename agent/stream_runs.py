"""Streamed execute (stream kind "execute"): a run whose events a stream follows.

``stream-start`` params ``{"mode", "code", "options", "run_id"}`` queue a run (in the
kernel's FIFO, shared with REST execute); ``{"run_id", "after_seq"}`` follow the log of
a streamed run from the event after ``after_seq``: what the client missed first, then
live events, each exactly once. The stream sends ``stream-event(seq, body)`` and closes
itself after the final one ("run finished"). A dropped stream does not stop its run.
``stream-control {"type": "input", "text"}`` answers a waiting-input prompt.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from agent.run_log import RunLog, with_gap_note
from agent.streams import StreamClosed, StreamSink
from common.errors import InvalidAPIParameters, KrakenError
from common.limits import MAX_CODE_CHARS
from common.msg_agent import Execute

if TYPE_CHECKING:
    from agent.kernels import Kernel
    from agent.runs import KernelRuns

log = logging.getLogger(__name__)

RUN_FINISHED = "run finished"
RUN_EXPIRED = "the run's output is no longer kept"
MAX_RUN_ID = 64


class ExecuteStream:
    """One stream following one run's log with a cursor."""

    def __init__(self, kernel: Kernel, runs: KernelRuns, run_log: RunLog, sink: StreamSink,
                 after_seq: int) -> None:
        self._kernel = kernel
        self._runs = runs
        self._log = run_log
        self._sink = sink
        self._cursor = after_seq + 1  # the next event to send
        self._task = asyncio.ensure_future(self._pump())

    async def _pump(self) -> None:
        run_log = self._log
        try:
            while True:
                missed = 0
                if self._cursor < run_log.first_seq and not run_log.freed:
                    missed = run_log.first_seq - self._cursor
                    self._cursor = run_log.first_seq
                event = run_log.get(self._cursor)
                if event is not None:
                    body = with_gap_note(event.body, missed) if missed else event.body
                    await self._sink.send_event(event.seq, body)
                    self._cursor += 1
                elif run_log.freed:
                    await self._sink.close(RUN_EXPIRED)
                    return
                elif run_log.done:
                    await self._sink.close(RUN_FINISHED)
                    return
                else:
                    await run_log.changed()
        except StreamClosed:
            return

    async def on_data(self, data: bytes) -> None:
        log.debug("execute stream of run %s: ignoring %d bytes of data", self._log.run_id,
                  len(data))

    async def on_control(self, body: dict[str, Any]) -> None:
        if body.get("type") != "input" or not isinstance(body.get("text"), str):
            log.info("execute stream of run %s: ignoring control %r", self._log.run_id,
                     body.get("type"))
            return
        self._kernel.touch()
        try:
            await self._runs.feed_input(self._log.run_id, body["text"])
        except KrakenError as e:
            log.info("input for run %s refused: %s", self._log.run_id, e)

    async def on_resize(self, rows: int, cols: int) -> None:
        return None

    async def on_close(self, reason: str) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def start_execute(kernel: Kernel, params: dict[str, Any],
                        sink: StreamSink) -> tuple[ExecuteStream, dict[str, Any]]:
    """The "execute" kind's starter (agent/stream_kinds.py)."""
    run_id = params.get("run_id")
    if not isinstance(run_id, str) or not 0 < len(run_id) <= MAX_RUN_ID:
        raise InvalidAPIParameters("run_id must be a non-empty string")
    runs = kernel.runs
    if "after_seq" in params:
        after = params["after_seq"]
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            raise InvalidAPIParameters("after_seq must be an integer ≥ 0")
        run_log = runs.log_of(run_id)
        if after > run_log.last_seq:
            raise InvalidAPIParameters(f"run {run_id} has no message {after} yet "
                                       f"(last: {run_log.last_seq})")
        return ExecuteStream(kernel, runs, run_log, sink, after), {"run_id": run_id,
                                                                   "resumed": True}
    mode, code, options = params.get("mode"), params.get("code", ""), params.get("options")
    if mode not in ("query", "batch"):
        raise InvalidAPIParameters("mode must be query or batch")
    if not isinstance(code, str) or len(code) > MAX_CODE_CHARS:
        raise InvalidAPIParameters("code must be a string within the size limit")
    if options is not None and not isinstance(options, dict):
        raise InvalidAPIParameters("options must be a map")
    kernel.touch()
    run_log = await runs.start_streamed(Execute(kernel_id=kernel.kernel_id, run_id=run_id,
                                                mode=mode, code=code, options=options))
    return ExecuteStream(kernel, runs, run_log, sink, 0), {"run_id": run_id, "resumed": False}
