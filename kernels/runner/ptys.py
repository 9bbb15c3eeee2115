"""Pseudo-terminal streams: a ``/bin/bash`` (or ``/bin/sh``) per ``stream_id``.

Owned by the I/O thread: it polls each stream's master fd, relays what it reads
as ``PtyOutput`` and, on end of file, reaps the shell and sends ``PtyClosed``.
Master fds are non-blocking: input a shell does not read yet waits in the stream (at
most ``PTY_INPUT_BYTES``, beyond that it is dropped) and is written when the fd is
writable, so a program that ignores its stdin never stalls the I/O thread.
"""
from __future__ import annotations

import fcntl
import os
import signal
import struct
import termios
from dataclasses import dataclass, field
from pathlib import Path

from common.codec import Message
from common.limits import PTY_INPUT_BYTES
from common.msg_runner import PtyClosed, PtyOutput

SHELLS = ("/bin/bash", "/bin/sh")
READ_CHUNK = 65536


@dataclass
class PtyStream:
    stream_id: str
    pid: int
    fd: int
    pending: bytearray = field(default_factory=bytearray)  # input not written yet


class PtyError(Exception):
    """A PTY request could not be served."""


def _check_size(rows: int, cols: int) -> None:
    if not (isinstance(rows, int) and isinstance(cols, int)
            and 0 < rows < 65536 and 0 < cols < 65536):
        raise PtyError(f"bad terminal size {rows!r}x{cols!r}")


def _set_size(fd: int, rows: int, cols: int) -> None:
    _check_size(rows, cols)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class PtyTable:
    """The open PTY streams, keyed by stream id and by master fd."""

    def __init__(self, workdir: Path) -> None:
        self._workdir = workdir
        self._by_id: dict[str, PtyStream] = {}
        self._by_fd: dict[int, PtyStream] = {}

    @property
    def fds(self) -> list[int]:
        return list(self._by_fd)

    @property
    def fds_to_write(self) -> list[int]:
        """Master fds with input waiting for the shell to read."""
        return [fd for fd, s in self._by_fd.items() if s.pending]

    def has(self, stream_id: str) -> bool:
        return stream_id in self._by_id

    def owns(self, pid: int) -> bool:
        return any(s.pid == pid for s in self._by_id.values())

    def open(self, stream_id: str, rows: int, cols: int) -> PtyStream:
        if stream_id in self._by_id:
            raise PtyError(f"pty stream {stream_id!r} is already open")
        _check_size(rows, cols)
        shell = next((s for s in SHELLS if os.access(s, os.X_OK)), SHELLS[-1])
        env = dict(os.environ, TERM="xterm-256color", HOME=str(self._workdir))
        pid, fd = os.forkpty()
        if pid == 0:  # child: exec at once, nothing else (the parent has threads)
            try:
                os.chdir(self._workdir)
                os.execve(shell, [shell], env)
            finally:
                os._exit(127)
        os.set_blocking(fd, False)
        stream = PtyStream(stream_id, pid, fd)
        self._by_id[stream_id] = stream
        self._by_fd[fd] = stream
        _set_size(fd, rows, cols)
        return stream

    def _get(self, stream_id: str) -> PtyStream:
        stream = self._by_id.get(stream_id)
        if stream is None:
            raise PtyError(f"no pty stream {stream_id!r}")
        return stream

    def write(self, stream_id: str, data: bytes) -> None:
        """Queue input and write what the terminal takes now; beyond ``PTY_INPUT_BYTES``
        waiting, input is dropped (``PtyError``)."""
        stream = self._get(stream_id)
        room = PTY_INPUT_BYTES - len(stream.pending)
        stream.pending += data[:max(room, 0)]
        self._flush_input(stream)
        if len(data) > room:
            raise PtyError(f"pty stream {stream_id!r}: {len(data) - max(room, 0)} bytes of "
                           "input dropped: the terminal does not read its input")

    def on_writable(self, fd: int) -> None:
        stream = self._by_fd.get(fd)
        if stream is not None:
            self._flush_input(stream)

    @staticmethod
    def _flush_input(stream: PtyStream) -> None:
        while stream.pending:
            try:
                n = os.write(stream.fd, stream.pending)
            except BlockingIOError:
                return
            except OSError:  # the shell is gone: its end of file comes on the read side
                stream.pending.clear()
                return
            del stream.pending[:n]

    def resize(self, stream_id: str, rows: int, cols: int) -> None:
        stream = self._get(stream_id)
        _set_size(stream.fd, rows, cols)
        os.kill(stream.pid, signal.SIGWINCH)

    def close(self, stream_id: str) -> None:
        """Hang up the shell; its end of file then yields ``PtyClosed``."""
        stream = self._get(stream_id)
        for sig in (signal.SIGHUP, signal.SIGCONT):
            try:
                os.killpg(stream.pid, sig)
            except ProcessLookupError:
                pass

    def on_readable(self, fd: int) -> list[Message]:
        """Read from a master fd; at end of file, reap and report the stream closed."""
        stream = self._by_fd[fd]
        try:
            data = os.read(fd, READ_CHUNK)
        except BlockingIOError:  # nothing to read after all
            return []
        except OSError:  # EIO: the slave side has no more openers
            data = b""
        if data:
            return [PtyOutput(stream_id=stream.stream_id, data=data)]
        return [PtyClosed(stream_id=stream.stream_id, exit_code=self._reap(stream))]

    def _reap(self, stream: PtyStream) -> int:
        del self._by_id[stream.stream_id]
        del self._by_fd[stream.fd]
        os.close(stream.fd)
        try:
            _, status = os.waitpid(stream.pid, 0)
        except ChildProcessError:
            return 0
        return os.waitstatus_to_exitcode(status) % 256 if os.WIFEXITED(status) else \
            128 + os.WTERMSIG(status)

    def close_all(self) -> None:
        for stream in list(self._by_id.values()):
            try:
                os.killpg(stream.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._reap(stream)
