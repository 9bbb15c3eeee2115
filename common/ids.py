"""Typed identifiers shared by every component."""
from __future__ import annotations

import secrets
import uuid
from typing import NewType

KernelId = NewType("KernelId", uuid.UUID)
"""The primary key of a compute session (one container in this version)."""

SessionName = NewType("SessionName", str)
"""The client-chosen ``clientSessionToken``; unique among a keypair's live sessions."""

AgentId = NewType("AgentId", str)
AccessKey = NewType("AccessKey", str)
RunId = NewType("RunId", str)


def new_kernel_id() -> KernelId:
    return KernelId(uuid.uuid4())


def new_run_id() -> RunId:
    return RunId(secrets.token_hex(8))


def new_access_key() -> AccessKey:
    # Backend.AI keys look like AKIA... (20 chars); keep the shape.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    return AccessKey("AKIA" + "".join(secrets.choice(alphabet) for _ in range(16)))


def new_secret_key() -> str:
    return secrets.token_urlsafe(30)
