"""The runner's outbox: ordering, coalescing and wakeups."""
from __future__ import annotations

import select

from common.limits import OUTPUT_DATA_BYTES, TEXT_CHUNK_CHARS
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
        assert [m for m, _ in box.drain()] == [
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
        assert [m for m, _ in box.drain()] == []
    finally:
        box.close()


class NoConcat(str):
    """Text that refuses ``+``: merging must join pieces, never grow a string."""

    def __add__(self, other: object) -> str:
        raise AssertionError("console text was concatenated")

    def __radd__(self, other: object) -> str:
        raise AssertionError("console text was concatenated")


def test_merging_100k_items_joins_once_and_splits_into_bounded_messages() -> None:
    box = Outbox()
    try:
        for _ in range(100_000):
            box.console("r", "stdout", NoConcat("x" * 99 + "\n"))
        drained = box.drain()
        total = 100_000 * 100
        assert box.held == total  # queued until the I/O thread sends them
        messages = [m for m, _ in drained]
        assert all(isinstance(m, ConsoleOutput) and len(m.items) == 1 for m in messages)
        sizes = [len(m.items[0][1]) for m in messages]  # type: ignore[attr-defined]
        assert sum(sizes) == total and max(sizes) <= OUTPUT_DATA_BYTES
        assert len(messages) == -(-total // OUTPUT_DATA_BYTES)  # as few as the bound allows
        for _, size in drained:
            box.release(size)
        assert box.held == 0
    finally:
        box.close()


def test_long_text_is_split_so_every_message_stays_bounded() -> None:
    box = Outbox()
    try:
        for text in ("y" * (OUTPUT_DATA_BYTES * 2 + 5), "\u00e9\U0001f600" * TEXT_CHUNK_CHARS):
            box.console("r", "stderr", text)
            messages = [m for m, _ in box.drain()]
            assert len(messages) >= 2
            for m in messages:
                assert isinstance(m, ConsoleOutput) and len(m.items) == 1
                assert len(m.items[0][1].encode()) <= OUTPUT_DATA_BYTES
            assert "".join(m.items[0][1] for m in messages) == text  # type: ignore[attr-defined]
    finally:
        box.close()


def test_a_full_queue_drops_and_reports_in_order() -> None:
    box = Outbox(limit=1000)
    try:
        box.console("r", "html", "h" * 600)
        box.console("r", "html", "h" * 600)  # does not fit: dropped whole
        box.console("r", "stdout", "s" * 600)  # 400 characters fit
        box.console("r", "stdout", "t")  # full: dropped
        box.message(RunFinished(run_id="r", phase="exec", exit_code=0))
        drained = box.drain()
        out, fin = drained[0][0], drained[1][0]
        assert isinstance(out, ConsoleOutput) and isinstance(fin, RunFinished)
        assert out.items == [["html", "h" * 600], ["stdout", "s" * 400]]
        assert out.dropped == {"html": 600, "stdout": 201}
        assert drained[0][1] == 1000 and box.held == 1000
        box.console("r", "stdout", "u")  # nothing was sent yet: still full
        box.release(drained[0][1])
        box.console("r", "stdout", "v")
        late = [m for m, _ in box.drain()]
        assert late == [ConsoleOutput(run_id="r", items=[["stdout", "v"]], dropped={"stdout": 1})]
    finally:
        box.close()


def test_an_item_too_large_for_one_message_is_dropped() -> None:
    box = Outbox()
    try:
        box.console("r", "media", ["image/png", "A" * (OUTPUT_DATA_BYTES + 1)])
        (msg, size), = box.drain()
        assert isinstance(msg, ConsoleOutput) and msg.items == [] and size == 0
        assert msg.dropped["media"] > OUTPUT_DATA_BYTES and box.held == 0
    finally:
        box.close()
