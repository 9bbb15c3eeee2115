"""Agent ↔ runner messages (the in-container protocol), version 1.

Sockets, all bound by the runner inside the container and connected by the agent:

- port 2000, runner PULL  ← agent PUSH:   RunQuery, RunBatch, FeedInput, Complete,
                                          PtyOpen, PtyInput, PtyResize, PtyClose
- port 2001, runner PUSH  → agent PULL:   RunnerReady, ConsoleOutput, WaitingInput,
                                          RunFinished, Completions, PtyOutput, PtyClosed
- port 2002, runner ROUTER ⇄ agent DEALER (control): Ping, Interrupt, Shutdown → ControlAck;
                                          GetStatus → RunnerStatus (v1 addition);
                                          StartService → ServiceStatus (v1 addition)

The control socket is served by its own thread in the runner, so an interrupt never
queues behind a running execute. See docs/protocol.md.
"""
from __future__ import annotations

from dataclasses import field
from typing import Any

from common.codec import Message, Protocol

RUNNER_PROTOCOL = Protocol("runner", version=1)
INPUT_PORT = 2000
OUTPUT_PORT = 2001
CONTROL_PORT = 2002

ConsoleItem = list[Any]  # [kind, data]: ["stdout", "text"], ["media", [mime, data]], ...

# ---- agent → runner (input socket) ---------------------------------------------


@RUNNER_PROTOCOL.message("run-query")
class RunQuery(Message):
    run_id: str
    code: str


@RUNNER_PROTOCOL.message("run-batch")
class RunBatch(Message):
    """Clean, build, then exec; ``"*"`` means the image's default for that step."""

    run_id: str
    clean: str | None = None
    build: str | None = None
    exec: str | None = None


@RUNNER_PROTOCOL.message("feed-input")
class FeedInput(Message):
    run_id: str
    text: str


@RUNNER_PROTOCOL.message("complete")
class Complete(Message):
    req_id: int
    code: str
    options: dict[str, Any] | None = None


@RUNNER_PROTOCOL.message("pty-open")
class PtyOpen(Message):
    stream_id: str
    rows: int = 24
    cols: int = 80


@RUNNER_PROTOCOL.message("pty-input")
class PtyInput(Message):
    stream_id: str
    data: bytes


@RUNNER_PROTOCOL.message("pty-resize")
class PtyResize(Message):
    stream_id: str
    rows: int
    cols: int


@RUNNER_PROTOCOL.message("pty-close")
class PtyClose(Message):
    stream_id: str


# ---- runner → agent (output socket) ---------------------------------------------


@RUNNER_PROTOCOL.message("runner-ready")
class RunnerReady(Message):
    protocol: int
    features: list[str]


@RUNNER_PROTOCOL.message("console-output")
class ConsoleOutput(Message):
    """Console items in the order the user code produced them.

    ``dropped`` (added in runner protocol v1, optional): ``{kind: bytes}`` of console
    items of this run the runner dropped since its previous ``ConsoleOutput`` because
    its unsent queue was full or an item was too large for one message."""

    run_id: str
    items: list[ConsoleItem]
    dropped: dict[str, int] = field(default_factory=dict)


@RUNNER_PROTOCOL.message("waiting-input")
class WaitingInput(Message):
    run_id: str
    prompt: str = ""
    is_password: bool = False


@RUNNER_PROTOCOL.message("run-finished")
class RunFinished(Message):
    """``phase`` is "clean" or "build" for the batch steps, else "exec"."""

    run_id: str
    phase: str
    exit_code: int


@RUNNER_PROTOCOL.message("completions")
class Completions(Message):
    req_id: int
    items: list[str]


@RUNNER_PROTOCOL.message("pty-output")
class PtyOutput(Message):
    stream_id: str
    data: bytes


@RUNNER_PROTOCOL.message("pty-closed")
class PtyClosed(Message):
    stream_id: str
    exit_code: int = 0


# ---- control socket -------------------------------------------------------------


@RUNNER_PROTOCOL.message("ping")
class Ping(Message):
    pass


@RUNNER_PROTOCOL.message("interrupt")
class Interrupt(Message):
    pass


@RUNNER_PROTOCOL.message("shutdown")
class Shutdown(Message):
    pass


@RUNNER_PROTOCOL.message("control-ack")
class ControlAck(Message):
    ok: bool = True
    detail: str = ""


# ---- control socket, v1 additions ---------------------------------------------------


@RUNNER_PROTOCOL.message("get-status")
class GetStatus(Message):
    """What the runner is doing now (a restarted agent asks before it re-attaches runs).

    A runner older than this message answers ``ControlAck(ok=False)``."""


@RUNNER_PROTOCOL.message("runner-status")
class RunnerStatus(Message):
    """``state``: "idle", "running" or "waiting-input"; ``run_id`` is "" when idle."""

    run_id: str = ""
    state: str = "idle"
    prompt: str = ""
    is_password: bool = False


@RUNNER_PROTOCOL.message("start-service")
class StartService(Message):
    """Start the image's service ``name`` unless it runs (the proxy's first connection).

    The runner reads ``common.services.SERVICE_DEFS_DIR/<name>.json`` and starts its
    ``argv`` once, as the session user in the work directory; a second request while it
    runs changes nothing. ``probe``: only report, never start. A runner older than this
    message answers ``ControlAck(ok=False)``."""

    name: str
    probe: bool = False


@RUNNER_PROTOCOL.message("service-status")
class ServiceStatus(Message):
    """``state``: "started" (by this request), "running" (it already ran), "stopped"
    (a probe: not running), or "failed" (it cannot be started: ``detail`` says why).
    ``last_exit``: how its previous process ended (exit code, or 128 + signal), if one did."""

    name: str
    state: str
    detail: str = ""
    last_exit: int | None = None
