"""A test client that plays the agent's side of the runner protocol."""
from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from common.codec import Message
from common.msg_runner import (
    RUNNER_PROTOCOL,
    ConsoleItem,
    ConsoleOutput,
    ControlAck,
    RunFinished,
    RunnerReady,
)

TIMEOUT_MS = 10_000


def merge(items: list[ConsoleItem]) -> list[ConsoleItem]:
    """Join contiguous text items of one kind, across message boundaries."""
    out: list[ConsoleItem] = []
    for kind, data in items:
        if out and out[-1][0] == kind and isinstance(data, str):
            out[-1] = [kind, out[-1][1] + data]
        else:
            out.append([kind, data])
    return out


@dataclass
class Run:
    """What one run produced, in arrival order."""

    items: list[ConsoleItem] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)

    def text(self, kind: str) -> str:
        return "".join(d for k, d in self.items if k == kind)

    @property
    def finished(self) -> list[RunFinished]:
        return [m for m in self.messages if isinstance(m, RunFinished)]


class RunnerClient:
    """Plays the agent: PUSH to input, PULL from output, DEALER on control."""

    def __init__(self, ctx: zmq.Context, port_base: int, host: str = "127.0.0.1") -> None:
        self.input = ctx.socket(zmq.PUSH)
        self.output = ctx.socket(zmq.PULL)
        self.control_sock = ctx.socket(zmq.DEALER)
        for i, sock in enumerate((self.input, self.output, self.control_sock)):
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(f"tcp://{host}:{port_base + i}")
        self._corr = 0

    def send(self, msg: Message) -> None:
        self.input.send(RUNNER_PROTOCOL.encode(msg))

    def recv(self, timeout_ms: int = TIMEOUT_MS) -> Message:
        if not self.output.poll(timeout_ms):
            raise TimeoutError("the runner sent nothing")
        msg, _ = RUNNER_PROTOCOL.decode(self.output.recv())
        return msg

    def control(self, msg: Message) -> ControlAck:
        reply = self.control_reply(msg)
        assert isinstance(reply, ControlAck)
        return reply

    def control_reply(self, msg: Message, timeout_ms: int = TIMEOUT_MS) -> Message:
        self._corr += 1
        self.control_sock.send(RUNNER_PROTOCOL.encode(msg, self._corr))
        if not self.control_sock.poll(timeout_ms):
            raise TimeoutError("no control reply")
        reply, corr_id = RUNNER_PROTOCOL.decode(self.control_sock.recv())
        assert corr_id == -self._corr
        return reply

    def collect(self, until: Callable[[Message], bool],
                on: Callable[[Message], Any] | None = None) -> Run:
        """Receive until ``until(msg)`` holds; ``on`` sees every message first."""
        run = Run()
        while True:
            msg = self.recv()
            if on is not None:
                on(msg)
            run.messages.append(msg)
            if isinstance(msg, ConsoleOutput):
                run.items.extend(msg.items)
            if until(msg):
                run.items = merge(run.items)
                return run

    def finish_of(self, run_id: str) -> Callable[[Message], bool]:
        return lambda m: (isinstance(m, RunFinished) and m.run_id == run_id
                          and m.phase == "exec")


@dataclass
class RunnerProcess:
    proc: subprocess.Popen[bytes]
    client: RunnerClient
    workdir: Path
    ready: RunnerReady
