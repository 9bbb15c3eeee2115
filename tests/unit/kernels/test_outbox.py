"""The runner's outbox: ordering, coalescing and wakeups."""
from __future__ import annotations

import select

from common.msg_runner import ConsoleOutput, RunFinished, WaitingInput
from kernels.runner.outbox import Outbox


def test_contiguous_text_merges_and_order_holds() -> None:
    box = Outbox()
    try:
        box.console("r", "stdout", "a")
        box.console("r", "stdout", "b")
        box.console("r", "stderr", "c")
        box.console("r", "html", "<i>")
        box.console("r", "html", "</i>")
        box.message(WaitingInput(run_id="r", prompt="?"))
        box.console("r", "stdout", "d")
        box.console("q", "stdout", "e")
        box.message(RunFinished(run_id="q", phase="exec", exit_code=0))
        assert box.drain() == [
            ConsoleOutput(run_id="r", items=[["stdout", "ab"], ["stderr", "c"],
                                             ["html", "<i>"], ["html", "</i>"]]),
            WaitingInput(run_id="r", prompt="?"),
            ConsoleOutput(run_id="r", items=[["stdout", "d"]]),
            ConsoleOutput(run_id="q", items=[["stdout", "e"]]),
            RunFinished(run_id="q", phase="exec", exit_code=0),
        ]
    finally:
        box.close()


def test_wake_fd_is_readable_only_while_entries_wait() -> None:
    box = Outbox()
    try:
        assert select.select([box.wake_fd], [], [], 0)[0] == []
        box.console("r", "stdout", "x")
        assert select.select([box.wake_fd], [], [], 0)[0] == [box.wake_fd]
        box.drain()
        assert select.select([box.wake_fd], [], [], 0)[0] == []
        assert box.drain() == []
    finally:
        box.close()
