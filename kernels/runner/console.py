"""What user code sees as its console: stdout/stderr writers and input prompts.

``ConsoleWriter`` replaces ``sys.stdout`` / ``sys.stderr``: every write becomes a
console item of the current run in the outbox. ``InputBroker`` provides the
stand-ins for ``input()`` and ``getpass.getpass()``: the prompt goes out as stdout,
then ``WaitingInput``, and the call blocks until a ``FeedInput`` for the run arrives.
"""
from __future__ import annotations

import io
import queue
from typing import Any

from common.msg_runner import WaitingInput
from kernels.runner.outbox import Outbox


class CurrentRun:
    """The id of the run whose output is being produced (the last one, when idle)."""

    def __init__(self) -> None:
        self.run_id = ""


class ConsoleWriter(io.TextIOBase):
    """A text stream whose writes become ``[kind, text]`` console items."""

    def __init__(self, outbox: Outbox, current: CurrentRun, kind: str) -> None:
        super().__init__()
        self._outbox = outbox
        self._current = current
        self._kind = kind

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    @property
    def name(self) -> str:
        return f"<{self._kind}>"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if text:
            self._outbox.console(self._current.run_id, self._kind, text)
        return len(text)

    def emit_item(self, kind: str, data: Any) -> None:
        """Emit a non-text console item such as ``["html", "<b>hi</b>"]``."""
        self._outbox.console(self._current.run_id, kind, data)


class InputBroker:
    """Blocks user code in ``input()`` until the agent feeds a line for its run."""

    def __init__(self, outbox: Outbox, current: CurrentRun) -> None:
        self._outbox = outbox
        self._current = current
        self._fed: queue.Queue[tuple[str, str]] = queue.Queue()
        self.waiting: WaitingInput | None = None  # the prompt user code is blocked on

    def feed(self, run_id: str, text: str) -> None:
        """Called from the I/O thread when ``FeedInput`` arrives."""
        self._fed.put((run_id, text))

    def reset(self) -> None:
        """Forget input fed for earlier runs."""
        while True:
            try:
                self._fed.get_nowait()
            except queue.Empty:
                return

    def ask(self, prompt: object = "", is_password: bool = False) -> str:
        run_id = self._current.run_id
        text = str(prompt)
        if text:
            self._outbox.console(run_id, "stdout", text)
        waiting = WaitingInput(run_id=run_id, prompt=text, is_password=is_password)
        self._outbox.message(waiting)
        self.waiting = waiting
        try:
            while True:
                fed_run, line = self._fed.get()
                if fed_run == run_id:
                    return line.removesuffix("\n")
        finally:
            self.waiting = None

    def input(self, prompt: object = "") -> str:
        """Stand-in for ``builtins.input``."""
        return self.ask(prompt, is_password=False)

    def getpass(self, prompt: str = "Password: ", stream: object = None) -> str:
        """Stand-in for ``getpass.getpass`` (the text is not echoed by the client)."""
        return self.ask(prompt, is_password=True)
