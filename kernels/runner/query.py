"""Query mode: user code runs in the main thread in one persistent namespace.

Exceptions print a traceback to the run's stderr with the code shown as
``<input>``; the run still exits with code 0 (the global context lives on).
``complete`` offers ``rlcompleter`` completions against the same namespace.
"""
from __future__ import annotations

import builtins
import linecache
import re
import rlcompleter
import sys
import traceback
from types import TracebackType
from typing import Any

FILENAME = "<input>"
MAX_COMPLETIONS = 200
_COMPLETABLE_TAIL = re.compile(r"[A-Za-z_][\w.]*$|$")


class Terminate(BaseException):
    """Raised in the main thread by SIGTERM; user code is not meant to catch it."""


class QueryEngine:
    """Runs code strings in a namespace that survives between runs."""

    def __init__(self) -> None:
        self.namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
        self.in_user_code = False

    def run(self, code: str) -> None:
        """Execute ``code``; report any exception as a traceback on ``sys.stderr``."""
        lines = code.splitlines(keepends=True)
        linecache.cache[FILENAME] = (len(code), None, lines, FILENAME)
        try:
            compiled = compile(code, FILENAME, "exec")
        except (SyntaxError, ValueError, OverflowError) as e:
            sys.stderr.write("".join(traceback.format_exception_only(type(e), e)))
            return
        try:
            self.in_user_code = True
            try:
                exec(compiled, self.namespace)  # noqa: S102 — running user code is the job
            finally:
                self.in_user_code = False
        except Terminate:
            raise
        except SystemExit:
            pass
        except BaseException as e:  # noqa: BLE001 — user errors incl. KeyboardInterrupt
            self._print_exception(e)
        finally:
            sys.stdout.flush()

    @staticmethod
    def _print_exception(exc: BaseException) -> None:
        tb: TracebackType | None = exc.__traceback__
        # Drop the runner's own frames so the traceback starts at "<input>".
        while tb is not None and tb.tb_frame.f_code.co_filename != FILENAME:
            tb = tb.tb_next
        exc = exc.with_traceback(tb)
        sys.stderr.write("".join(traceback.format_exception(type(exc), exc, tb)))

    def complete(self, code: str) -> list[str]:
        """Completions for the identifier or attribute chain at the end of ``code``."""
        match = _COMPLETABLE_TAIL.search(code)
        text = match.group(0) if match else ""
        if not text:
            return []
        completer = rlcompleter.Completer(self.namespace)
        found: list[str] = []
        for state in range(MAX_COMPLETIONS):
            try:
                item = completer.complete(text, state)
            except Exception:  # noqa: BLE001 — a user property raising during lookup
                break
            if item is None:
                break
            item = item.rstrip("(")
            if item not in found:
                found.append(item)
        return found
