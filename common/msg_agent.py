"""Manager ↔ agent messages (the agent link), version 2 (v2 adds the stream messages below).

The agent dials out: its DEALER socket connects to each manager replica's ROUTER
socket over CurveZMQ (the manager's public key is in the agent's config). Until an
agent has sent ``Join`` with a valid token on a connection, the manager answers
every other message from it with ``ErrorReply(error_type="unauthorized")``.

Requests and their replies share a ``corr_id`` (see ``common.codec``). Streams
(terminals, streamed execute output) are identified by ``stream_id`` and flow as
``StreamData`` in both directions between ``StreamOpen`` and ``StreamClose``.
See docs/protocol.md for the full table.
"""
from __future__ import annotations

from dataclasses import field
from typing import Any

from common.codec import Message, Protocol

AGENT_PROTOCOL = Protocol("agent", version=2)

# ---- agent → manager ------------------------------------------------------------


@AGENT_PROTOCOL.message("join")
class Join(Message):
    """First message on a connection. Reply: JoinAccepted or ErrorReply."""

    agent_id: str
    token: str
    region: str
    version: str
    available_slots: dict[str, str]
    images: list[dict[str, Any]]  # [{"name", "id", "labels": {...}}]
    kernels: list[str]  # kernel ids of the containers this agent holds
    gpus: list[dict[str, Any]] = field(default_factory=list)
    creating: list[str] = field(default_factory=list)  # kernel ids whose create is under way
    group: str = "default"  # agent group (link v2 addition; absent from older agents)
    # agent link v2 addition: random per agent process. A join naming an agent id that a
    # live agent with another instance id holds is refused (agent-id-conflict, 409).
    instance_id: str = ""


@AGENT_PROTOCOL.message("heartbeat")
class Heartbeat(Message):
    """One-way, every ``heartbeat_interval`` seconds."""

    agent_id: str
    available_slots: dict[str, str]
    occupied_slots: dict[str, str]
    kernels: list[str]  # kernel ids of the running containers this agent holds
    images: list[dict[str, Any]] | None = None  # only when the image set changed
    creating: list[str] = field(default_factory=list)  # kernel ids whose create is under way


@AGENT_PROTOCOL.message("kernel-terminated")
class KernelTerminated(Message):
    """One-way event: a container stopped without being asked to."""

    kernel_id: str
    reason: str
    exit_code: int | None = None


@AGENT_PROTOCOL.message("kernel-stats-batch")
class KernelStatsBatch(Message):
    """One-way, agent link v2 addition: every ``stats_interval`` seconds, the Container
    Stats Object (seed 004 §2.9.8) of each running kernel, ``{kernel_id: stats}``, in
    one message per agent (the manager stores it in one statement)."""

    stats: dict[str, dict[str, int]]


# ---- manager → agent requests -----------------------------------------------------


@AGENT_PROTOCOL.message("join-accepted")
class JoinAccepted(Message):
    """``keep_kernels`` is informative only: an agent never destroys a kernel because it
    is missing there. It destroys the reported kernels listed in ``drop_kernels``."""

    heartbeat_interval: float
    keep_kernels: list[str]  # reported kernels whose session the manager knows as live
    drop_kernels: list[str] = field(default_factory=list)  # reported kernels to destroy


@AGENT_PROTOCOL.message("rejoin")
class Rejoin(Message):
    """Reply to a message from a connection that has not joined (manager restarted)."""


@AGENT_PROTOCOL.message("create-kernel")
class CreateKernel(Message):
    kernel_id: str
    session_name: str
    access_key: str
    image: str  # the image reference on the agent, e.g. "kraken/python:latest"
    slots: dict[str, str]  # cpu, mem (bytes), cuda.device
    environ: dict[str, str]
    # [{"host_path", "target", "mode": "ro"|"rw"}]
    mounts: list[dict[str, Any]] = field(default_factory=list)
    idle_timeout: float | None = None


@AGENT_PROTOCOL.message("kernel-created")
class KernelCreated(Message):
    kernel_id: str
    container_id: str
    slots: dict[str, str]  # what was actually granted (after image-label caps)
    features: list[str]


@AGENT_PROTOCOL.message("destroy-kernel")
class DestroyKernel(Message):
    kernel_id: str
    reason: str


@AGENT_PROTOCOL.message("kernel-destroyed")
class KernelDestroyed(Message):
    kernel_id: str
    stats: dict[str, Any]  # the Container Stats Object of seed 004 §2.9.8


@AGENT_PROTOCOL.message("restart-kernel")
class RestartKernel(Message):
    kernel_id: str


@AGENT_PROTOCOL.message("execute")
class Execute(Message):
    """One execute API call. ``mode``: query | batch | continue | input."""

    kernel_id: str
    run_id: str
    mode: str
    code: str
    options: dict[str, Any] | None = None
    flush_timeout: float = 2.0


@AGENT_PROTOCOL.message("execute-result")
class ExecuteResult(Message):
    """The Execution Result Object of seed 004 §2.9.6.

    ``dropped`` (agent link v1 addition): ``{kind: bytes}`` of console output dropped
    since the previous call because it did not fit the output limits (common.console);
    ``console`` then ends with a stderr note saying so."""

    run_id: str
    status: str
    console: list[list[Any]]
    exit_code: int | None = None
    options: dict[str, Any] | None = None
    files: list[dict[str, Any]] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)


@AGENT_PROTOCOL.message("interrupt-kernel")
class InterruptKernel(Message):
    kernel_id: str


@AGENT_PROTOCOL.message("complete-code")
class CompleteCode(Message):
    kernel_id: str
    code: str
    options: dict[str, Any] | None = None


@AGENT_PROTOCOL.message("completion-result")
class CompletionResult(Message):
    items: list[str]


@AGENT_PROTOCOL.message("get-kernel-stats")
class GetKernelStats(Message):
    kernel_id: str


@AGENT_PROTOCOL.message("kernel-stats")
class KernelStats(Message):
    stats: dict[str, Any]


# ---- files and logs of a kernel (agent link v1 additions) ---------------------------


@AGENT_PROTOCOL.message("upload-files")
class UploadFiles(Message):
    """Write files into the kernel's /home/work. Reply: FilesUploaded.

    ``files``: [{"path": str (relative to /home/work, or absolute inside it),
    "data": bytes}]. Parent directories are created; nothing outside /home/work.
    """

    kernel_id: str
    files: list[dict[str, Any]]


@AGENT_PROTOCOL.message("files-uploaded")
class FilesUploaded(Message):
    paths: list[str]  # where each file landed, relative to /home/work


@AGENT_PROTOCOL.message("list-files")
class ListFiles(Message):
    """List one directory under /home/work. Reply: FileList."""

    kernel_id: str
    path: str = "."


@AGENT_PROTOCOL.message("file-list")
class FileList(Message):
    abspath: str  # the directory as the container sees it
    files: list[dict[str, Any]]  # [{"filename", "size", "mode" (ls-style), "mtime"}]


@AGENT_PROTOCOL.message("download-files")
class DownloadFiles(Message):
    """Read files under /home/work, each as a tar archive. Reply: FilesArchive."""

    kernel_id: str
    files: list[str]


@AGENT_PROTOCOL.message("files-archive")
class FilesArchive(Message):
    archives: list[bytes]  # one tar archive per requested file, in request order


@AGENT_PROTOCOL.message("get-logs")
class GetLogs(Message):
    """The container's console log (stdout + stderr). Reply: KernelLogs."""

    kernel_id: str


@AGENT_PROTOCOL.message("kernel-logs")
class KernelLogs(Message):
    logs: str


# ---- either direction -----------------------------------------------------------


@AGENT_PROTOCOL.message("ack")
class Ack(Message):
    pass


@AGENT_PROTOCOL.message("error-reply")
class ErrorReply(Message):
    """A request failed; ``error_type`` is a ``common.errors`` slug."""

    error_type: str
    detail: str = ""


@AGENT_PROTOCOL.message("stream-open")
class StreamOpen(Message):
    """manager → agent: open a byte stream. ``kind``: "pty" | "execute"."""

    stream_id: str
    kernel_id: str
    kind: str
    rows: int = 24
    cols: int = 80


@AGENT_PROTOCOL.message("stream-data")
class StreamData(Message):
    stream_id: str
    data: bytes


@AGENT_PROTOCOL.message("stream-resize")
class StreamResize(Message):
    stream_id: str
    rows: int
    cols: int


@AGENT_PROTOCOL.message("stream-close")
class StreamClose(Message):
    stream_id: str
    reason: str = ""


# ---- streams, agent link v2 (web terminals, streamed execute, service proxies) ---------
# A stream is started by one manager replica with ``stream-start`` and belongs to that
# agent connection: everything of the stream flows on it, and the agent ends the stream
# (not the terminal behind it) when that connection drops. ``stream-data`` and
# ``stream-close`` above carry its bytes and its end. Flow control is credit based:
# each side may have at most ``common.streams.WINDOW_BYTES`` unacknowledged bytes
# in flight (``common.streams.cost``), and returns credit with ``stream-credit`` once
# it has passed data on (to the WebSocket, the runner, the TCP socket).


@AGENT_PROTOCOL.message("stream-start")
class StreamStart(Message):
    """manager → agent request. Reply: StreamStarted or ErrorReply.

    ``kind`` and ``params``:
    - ``"pty"``: ``{"term": str, "rows": int, "cols": int}``. Attaches to the kernel's
      terminal named ``term`` (created on first attach, kept when streams detach); the
      recent scrollback is sent first as ``stream-data``.
    - ``"execute"``: ``{"mode": "query"|"batch", "code": str, "options": dict|None,
      "run_id": str}`` starts a run; ``{"run_id": str, "after_seq": int}`` resumes the
      stream of a run from the message after ``after_seq``. The agent sends
      ``stream-event`` messages.
    - ``"proxy"``: ``{"service": str, "protocol": "http"|"tcp"}``: the agent starts the
      service if needed and connects to its port inside the session.
    """

    stream_id: str
    kernel_id: str
    kind: str
    params: dict[str, Any]


@AGENT_PROTOCOL.message("stream-started")
class StreamStarted(Message):
    """Reply to ``stream-start``. ``info``: pty ``{"term"}``, execute ``{"run_id",
    "resumed": bool}``, proxy ``{"service", "port", "protocol"}``."""

    stream_id: str
    info: dict[str, Any] = field(default_factory=dict)


@AGENT_PROTOCOL.message("stream-event")
class StreamEvent(Message):
    """agent → manager, one-way: one message of an execute stream, numbered from 1 per
    run. ``body`` is an Execution Result Object (seed 004 §2.9.6: ``status``, ``console``,
    ``exitCode``, ``options``, ``files``); the last one has a final status."""

    stream_id: str
    seq: int
    body: dict[str, Any]


@AGENT_PROTOCOL.message("stream-control")
class StreamControl(Message):
    """manager → agent, one-way: a client message that is not bytes. ``body``:
    pty ``{"type": "ping"}`` / ``{"type": "restart"}`` (a fresh shell);
    execute ``{"type": "input", "text": str}`` (answer to waiting-input)."""

    stream_id: str
    body: dict[str, Any]


@AGENT_PROTOCOL.message("stream-credit")
class StreamCredit(Message):
    """Either direction, one-way: the sender of this message has passed ``amount`` more
    bytes of the stream on; its peer may send that much more."""

    stream_id: str
    amount: int
