"""Batch mode: clean → build → exec, each a ``bash -c`` command in the work dir.

Each step runs in its own process group with stdin from /dev/null; two reader
threads turn its stdout and stderr into console items as they arrive. After each
step that ran, ``RunFinished`` names its phase. A step given as None/"" is
skipped; ``"*"`` stands for the image default (``KRAKEN_BATCH_DEFAULT_*``). When
the build fails, exec does not run and finishes with exit code 127.
"""
from __future__ import annotations

import codecs
import os
import signal
import subprocess
import threading
from collections.abc import Callable
from typing import IO

from common.msg_runner import RunBatch, RunFinished
from kernels.runner.outbox import Outbox
from kernels.runner.settings import Settings

BUILD_FAILED_EXIT = 127
READ_CHUNK = 65536


class BatchRunner:
    """Runs batch steps one at a time; ``interrupt`` signals the running step."""

    def __init__(self, settings: Settings, outbox: Outbox,
                 track_child: Callable[[int, bool], None]) -> None:
        self._settings = settings
        self._outbox = outbox
        self._track_child = track_child
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None

    def resolve(self, given: str | None, default: str) -> str:
        """The command for one step: "" when skipped, the default for "*"."""
        if given is None:
            return ""
        return default.strip() if given.strip() == "*" else given.strip()

    def run(self, msg: RunBatch) -> None:
        s = self._settings
        clean = self.resolve(msg.clean, s.default_clean)
        build = self.resolve(msg.build, s.default_build)
        exec_cmd = self.resolve(msg.exec, s.default_exec)
        if clean:
            self._finish(msg.run_id, "clean", self.run_step(msg.run_id, clean))
        build_code = 0
        if build:
            build_code = self.run_step(msg.run_id, build)
            self._finish(msg.run_id, "build", build_code)
        if not exec_cmd:
            self._finish(msg.run_id, "exec", build_code)
        elif build_code != 0:
            self._finish(msg.run_id, "exec", BUILD_FAILED_EXIT)
        else:
            self._finish(msg.run_id, "exec", self.run_step(msg.run_id, exec_cmd))

    def _finish(self, run_id: str, phase: str, code: int) -> None:
        self._outbox.message(RunFinished(run_id=run_id, phase=phase, exit_code=code))

    def run_step(self, run_id: str, command: str) -> int:
        """Run one shell command to completion; return its exit code (128+N on signal N)."""
        env = dict(os.environ, HOME=str(self._settings.workdir))
        try:
            proc = subprocess.Popen(
                ["bash", "-c", command], cwd=self._settings.workdir, env=env,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                start_new_session=True)
        except OSError as e:
            self._outbox.console(run_id, "stderr", f"cannot start bash: {e}\n")
            return BUILD_FAILED_EXIT
        self._track_child(proc.pid, True)
        with self._lock:
            self._proc = proc
        assert proc.stdout is not None and proc.stderr is not None
        readers = [self._reader(run_id, "stdout", proc.stdout),
                   self._reader(run_id, "stderr", proc.stderr)]
        for reader in readers:
            reader.join()
        code = proc.wait()
        with self._lock:
            self._proc = None
        self._track_child(proc.pid, False)
        return 128 - code if code < 0 else code

    def _reader(self, run_id: str, kind: str, stream: IO[bytes]) -> threading.Thread:
        def pump() -> None:
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            fd = stream.fileno()
            with stream:
                while chunk := os.read(fd, READ_CHUNK):
                    text = decoder.decode(chunk)
                    if text:
                        self._outbox.console(run_id, kind, text)
                tail = decoder.decode(b"", final=True)
                if tail:
                    self._outbox.console(run_id, kind, tail)

        thread = threading.Thread(target=pump, name=f"batch-{kind}", daemon=True)
        thread.start()
        return thread

    def interrupt(self) -> bool:
        """Send SIGINT to the running step's process group; False if none runs."""
        with self._lock:
            proc = self._proc
        if proc is None or proc.poll() is not None:
            return False
        try:
            os.killpg(proc.pid, signal.SIGINT)
        except ProcessLookupError:
            return False
        return True

    def terminate(self) -> None:
        """Kill the running step's process group (runner shutdown)."""
        with self._lock:
            proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
