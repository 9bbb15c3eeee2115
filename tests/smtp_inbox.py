"""A real SMTP server for tests (aiosmtpd) that keeps every mail it accepts."""
from __future__ import annotations

import asyncio
import email
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller


class Inbox:
    """aiosmtpd handler: keeps every mail it accepts."""

    def __init__(self) -> None:
        self.mails: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mails.append(email.message_from_bytes(envelope.content))
        return "250 OK"

    def to(self, address: str) -> list[Message]:
        return [m for m in self.mails if m["To"] == address]

    async def wait(self, address: str, count: int = 1, timeout: float = 5.0) -> Message:
        for _ in range(int(timeout / 0.05)):
            got = self.to(address)
            if len(got) >= count:
                return got[count - 1]
            await asyncio.sleep(0.05)
        raise AssertionError(f"no mail #{count} to {address}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_inbox() -> Iterator[tuple[Inbox, int]]:
    """An SMTP server on a free loopback port: (its inbox, its port)."""
    box, port = Inbox(), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()
