"""Size limits on what crosses a ZeroMQ socket and what a run may buffer: one place for each.

Every socket of the agent link (manager ROUTER, agent DEALER) and the runner's input
socket refuse a message larger than ``MAX_MESSAGE_BYTES`` (ZeroMQ ``MAXMSGSIZE``: the
peer that sent it is disconnected, the receiver goes on). The largest legitimate
messages are file transfers and code, so the limit is derived from their limits below
(tests/unit/common/test_limits.py encodes the largest of each and checks they fit).

Runner → agent sockets (console output, control acks) carry at most
``MAX_OUTPUT_MESSAGE_BYTES``: the runner splits text and sends at most
``OUTPUT_DATA_BYTES`` of console data per message, and the agent's receive queue for a
runner holds at most ``OUTPUT_RCVHWM`` messages, so a hostile runner can make the
agent queue at most ``OUTPUT_RCVHWM × MAX_OUTPUT_MESSAGE_BYTES`` in ZeroMQ.

This module is copied into the kernel image with the runner (kernels/build.py).
"""
from __future__ import annotations

# ---- what legitimate messages carry (the REST API enforces these first) ------------------
MAX_CODE_CHARS = 16 << 20  # execute/batch code, characters (≤ 4 bytes each in UTF-8)
MAX_UPLOAD_FILES = 20  # per /kernel/:id/upload
MAX_UPLOAD_BYTES = 1 << 20  # per uploaded file
MAX_DOWNLOAD_FILES = 5  # per /kernel/:id/download
MAX_DOWNLOAD_BYTES = 16 << 20  # per downloaded file

# ---- per message -----------------------------------------------------------------------
FRAMING_SLACK = 8 << 20  # msgpack framing, tar headers, paths, other fields
MAX_MESSAGE_BYTES = max(
    4 * MAX_CODE_CHARS,
    MAX_UPLOAD_FILES * MAX_UPLOAD_BYTES,
    MAX_DOWNLOAD_FILES * MAX_DOWNLOAD_BYTES,
) + FRAMING_SLACK  # 72 MiB
MAX_OUTPUT_MESSAGE_BYTES = 8 << 20  # runner → agent (output and control sockets)
OUTPUT_DATA_BYTES = 4 << 20  # console data per ConsoleOutput a runner sends
TEXT_CHUNK_CHARS = OUTPUT_DATA_BYTES // 4  # a text item is split at this many characters
OUTPUT_RCVHWM = 8  # messages the agent's ZeroMQ queue holds per runner before pushing back
PTY_INPUT_BYTES = 1 << 20  # terminal input a runner holds for a shell that does not read it

# ---- per run ---------------------------------------------------------------------------
MAX_STREAM_CHARS = 524_288  # stdout / stderr per execute call each (seed 004 §2.10.2)
RUNNER_QUEUE_BYTES = 32 << 20  # console data a runner holds unsent before it drops
RUN_OUTPUT_BYTES = 8 << 20  # agent default: console bytes one run buffers between calls
KERNEL_OUTPUT_BYTES = 32 << 20  # agent default: the same, all runs of one kernel together
RESPONSE_BYTES = 16 << 20  # manager default: console bytes in one execute response
