"""Rules shared by both ends of a stream (agent link v2): window, cost, limits.

A stream's sender counts the ``cost`` of every ``stream-data`` and ``stream-event`` it
sends and stops at ``WINDOW_BYTES`` not yet credited; the receiver returns credit with
``stream-credit`` once it has passed the data on. See docs/protocol.md.
"""
from __future__ import annotations

from typing import Any

import msgpack

STREAM_KINDS = ("pty", "execute", "proxy")
WINDOW_BYTES = 256 << 10  # unacknowledged bytes in flight, per stream and direction
PTY_SCROLLBACK_BYTES = 64 << 10  # recent terminal output a re-attached client receives
PTY_PENDING_BYTES = 1 << 20  # terminal output held for one slow client before dropping
PROXY_READ_BYTES = 64 << 10  # one read from a proxied socket, one stream-data
SERVICE_START_TIMEOUT = 30.0  # seconds a proxy stream-start waits for its service's port
EXECUTE_LOG_LINGER = 300.0  # seconds a finished run's stream stays resumable
DEFAULT_TERM = "default"
# an execute stream's last message has one of these statuses (seed 004 §2.9.6)
RUN_FINAL_STATUSES = frozenset({"finished", "exec-timeout"})


def cost(payload: bytes | dict[str, Any]) -> int:
    """What a stream-data (its bytes) or a stream-event (its packed body) counts for."""
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return len(payload)
    return len(msgpack.packb(payload, use_bin_type=True))
