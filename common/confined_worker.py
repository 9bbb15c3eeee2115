"""The unprivileged process that touches user-controlled files, and its framing.

The manager and the agent run as root; a bug in a path check there would reach the
whole host. So they never open a folder's or a scratch dir's contents themselves:
they pass the directory's descriptor to a worker started by
:class:`common.confined_pool.ConfinedPool`, which imports what it needs, then drops to
the session uid/gid (``setgroups([])``, ``setresgid``, ``setresuid``), checks that it
can not regain root and holds no capability, and serves requests from
:data:`common.confined_ops.OPS`. A missed check in the worker reaches no more than a
session already can.

Framing on the worker's Unix stream socket: an 8-byte big-endian length, then a
msgpack map; descriptors travel as ``SCM_RIGHTS`` with the first bytes. Requests are
``{"op", "args"}``; replies ``{"ok": result}`` or ``{"error": slug, "detail"}`` — never
pickle, so a compromised worker cannot make its parent run code.
"""
from __future__ import annotations

import argparse
import bz2  # noqa: F401  (tarfile imports these lazily; import before dropping root)
import ctypes
import gzip  # noqa: F401
import lzma  # noqa: F401
import os
import resource
import signal
import socket
import struct
import sys
from typing import Any

import msgpack

from common.confined_fs import MAX_DEPTH
from common.confined_ops import OPS
from common.errors import InvalidAPIParameters, KrakenError

HEADER = struct.Struct("!Q")
MAX_FDS = 64
MAX_FRAME = 256 << 20
_PR_SET_PDEATHSIG, _PR_SET_NO_NEW_PRIVS = 1, 38


def send(sock: socket.socket, obj: Any, fds: list[int] | None = None) -> None:
    body = msgpack.packb(obj, use_bin_type=True)
    data = HEADER.pack(len(body)) + body
    sent = socket.send_fds(sock, [data], fds) if fds else 0
    sock.sendall(data[sent:])


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise EOFError("the peer closed the socket")
        buf += chunk
    return bytes(buf)


def recv(sock: socket.socket) -> tuple[Any, list[int]]:
    """One message and the descriptors that came with it (EOFError at the end)."""
    first, fds, _, _ = socket.recv_fds(sock, HEADER.size, MAX_FDS)
    if not first:
        for fd in fds:
            os.close(fd)
        raise EOFError("the peer closed the socket")
    try:
        head = first + _recv_exact(sock, HEADER.size - len(first))
        (size,) = HEADER.unpack(head)
        if size > MAX_FRAME:
            raise EOFError(f"a frame of {size} bytes is too large")
        return msgpack.unpackb(_recv_exact(sock, size), raw=False), fds
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


def _prctl(option: int, arg: int) -> None:
    if ctypes.CDLL(None, use_errno=True).prctl(option, arg, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl failed")


def capabilities() -> dict[str, int]:
    """The Cap* lines of /proc/self/status, as integers."""
    with open("/proc/self/status") as f:
        return {k: int(v, 16) for k, _, v in (line.partition(":\t") for line in f)
                if k.startswith("Cap")}


def drop_privileges(uid: int, gid: int) -> None:
    """Become ``uid``/``gid`` with no supplementary groups and no capabilities; when
    not root, stay the current user. Exits if root could be regained."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if os.geteuid() == 0:
        if uid == 0 or gid == 0:
            sys.exit("the confined-file worker must not run as uid or gid 0")
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    _prctl(_PR_SET_NO_NEW_PRIVS, 1)
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # cleared by setresuid: set after it
    try:
        os.setresuid(0, 0, 0)
    except PermissionError:
        pass
    else:
        sys.exit("the confined-file worker could regain root")
    if os.getuid() != 0 and capabilities().get("CapEff", 0):
        sys.exit("the confined-file worker holds capabilities")


def handle(request: Any, fds: list[int]) -> tuple[Any, list[int]]:
    try:
        op = OPS.get(str(request.get("op"))) if isinstance(request, dict) else None
        if op is None:
            raise InvalidAPIParameters("unknown confined-file operation")
        result, out = op(request.get("args") or {}, fds)
        return {"ok": result}, out
    except KrakenError as e:
        return {"error": e.slug, "detail": str(e)}, []
    except (OSError, KeyError, TypeError, ValueError, RecursionError) as e:
        return {"error": "invalid-api-params", "detail": f"{type(e).__name__}: {e}"}, []


def serve(sock: socket.socket) -> None:
    while True:
        try:
            request, fds = recv(sock)
        except EOFError:
            return
        try:
            reply, out = handle(request, fds)
        finally:
            for fd in fds:
                os.close(fd)
        try:
            send(sock, reply, out)
        finally:
            for fd in out:
                os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--uid", type=int, required=True)
    parser.add_argument("--gid", type=int, required=True)
    args = parser.parse_args()
    sys.setrecursionlimit(8 * MAX_DEPTH)  # trees are walked recursively, a frame or two a level
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # tar streamers reap themselves
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    sock = socket.socket(fileno=args.fd)
    os.chdir("/")
    drop_privileges(args.uid, args.gid)
    send(sock, {"ok": "ready"})
    serve(sock)


if __name__ == "__main__":
    main()
