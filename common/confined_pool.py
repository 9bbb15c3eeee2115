"""A few pre-started confined-file workers (``common.confined_worker``) and the async
calls that reach them: ``await pool.call(op, args, fds)``.

Every user path of the manager's virtual folders and the agent's kernel scratch dirs
goes through one of these calls; the caller passes the descriptor of the directory
the path is confined to, never a path. Errors come back as :class:`KrakenError`
classes, optionally translated per caller (``PathNotAllowed`` →
``VFolderPathNotAllowed`` for folders). A worker that dies is replaced; the request it
held fails with 503 ``service-unavailable``.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import confined_worker as wire
from common.errors import KrakenError, ServiceUnavailable, error_from_wire

log = logging.getLogger(__name__)
Translate = Mapping[type[KrakenError], type[KrakenError]]
STARTUP_TIMEOUT = 60.0
_SOURCE_ROOT = str(Path(__file__).resolve().parent.parent)


@dataclass(slots=True, eq=False)
class _Worker:
    proc: subprocess.Popen[bytes]
    sock: socket.socket

    def roundtrip(self, request: dict[str, Any], fds: list[int]) -> tuple[Any, list[int]]:
        wire.send(self.sock, request, fds)
        return wire.recv(self.sock)

    def stop(self, timeout: float = 5.0) -> None:
        self.sock.close()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _start_worker(uid: int, gid: int) -> _Worker:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_SOURCE_ROOT, env.get("PYTHONPATH")]))
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "common.confined_worker", "--fd", str(theirs.fileno()),
             "--uid", str(uid), "--gid", str(gid)],
            pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, env=env, cwd="/")
    finally:
        theirs.close()
    worker = _Worker(proc, ours)
    try:
        ours.settimeout(STARTUP_TIMEOUT)
        ready, fds = wire.recv(ours)
        ours.settimeout(None)
    except (EOFError, OSError):
        worker.stop(1.0)
        raise ServiceUnavailable("the confined-file worker did not start") from None
    if ready != {"ok": "ready"} or fds:
        worker.stop(1.0)
        raise ServiceUnavailable("the confined-file worker did not start")
    return worker


def close_fds(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _close_result_fds(job: asyncio.Future[tuple[Any, list[int]]]) -> None:
    if not job.cancelled() and job.exception() is None:
        close_fds(job.result()[1])


class ConfinedPool:
    """``size`` workers running as ``uid``/``gid`` (the current user when not root)."""

    def __init__(self, uid: int, gid: int, size: int = 2, translate: Translate | None = None
                 ) -> None:
        self.uid, self.gid, self.size = uid, gid, size
        self._translate = dict(translate or {})
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        self._all: set[_Worker] = set()
        self._closed = False
        self._replacing: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        workers = await asyncio.gather(*(asyncio.to_thread(_start_worker, self.uid, self.gid)
                                         for _ in range(self.size)))
        for w in workers:
            self._all.add(w)
            self._idle.put_nowait(w)

    async def close(self) -> None:
        self._closed = True
        await asyncio.gather(*self._replacing, return_exceptions=True)
        workers, self._all = list(self._all), set()
        await asyncio.gather(*(asyncio.to_thread(w.stop) for w in workers))

    async def call(self, op: str, args: dict[str, Any] | None = None,
                   fds: list[int] | None = None) -> tuple[Any, list[int]]:
        """(result, descriptors the worker sent back — the caller closes them)."""
        worker = await self._idle.get()
        job = asyncio.ensure_future(asyncio.to_thread(
            worker.roundtrip, {"op": op, "args": args or {}}, list(fds or [])))
        job.add_done_callback(lambda j: self._finished(worker, j))
        try:
            reply, out = await asyncio.shield(job)
        except asyncio.CancelledError:
            job.add_done_callback(_close_result_fds)
            raise
        except (EOFError, OSError) as e:
            raise ServiceUnavailable(f"the confined-file worker failed: {e}") from None
        if isinstance(reply, dict) and "ok" in reply:
            return reply["ok"], out
        close_fds(out)
        raise self._error(reply)

    async def result(self, op: str, args: dict[str, Any] | None = None,
                     fds: list[int] | None = None) -> Any:
        """:meth:`call` for operations that send no descriptors back."""
        value, out = await self.call(op, args, fds)
        close_fds(out)
        return value

    def _error(self, reply: Any) -> KrakenError:
        if not isinstance(reply, dict) or not isinstance(reply.get("error"), str):
            return ServiceUnavailable("the confined-file worker answered nonsense")
        detail = str(reply.get("detail") or "")[:4096]
        err = error_from_wire(reply["error"], detail)
        cls = self._translate.get(type(err))
        return cls(detail) if cls is not None else err

    def _finished(self, worker: _Worker, job: asyncio.Future[Any]) -> None:
        if worker not in self._all:
            return
        if job.cancelled() or job.exception() is not None:
            self._all.discard(worker)
            log.warning("replacing a confined-file worker: %s",
                        "cancelled" if job.cancelled() else job.exception())
            task = asyncio.ensure_future(self._replace(worker))
            self._replacing.add(task)
            task.add_done_callback(self._replacing.discard)
            return
        self._idle.put_nowait(worker)

    async def _replace(self, dead: _Worker) -> None:
        await asyncio.to_thread(dead.stop, 1.0)
        while not self._closed:
            try:
                fresh = await asyncio.to_thread(_start_worker, self.uid, self.gid)
                break
            except ServiceUnavailable:
                log.exception("cannot start a confined-file worker; retrying")
                await asyncio.sleep(1.0)
        else:
            return
        if self._closed:
            await asyncio.to_thread(fresh.stop, 1.0)
            return
        self._all.add(fresh)
        self._idle.put_nowait(fresh)
