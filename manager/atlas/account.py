"""The account as the rest of the manager sees it (no password hash, no secrets)."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Account:
    id: uuid.UUID
    email: str
    nickname: str
    access_key: str  # the account's keypair: its sessions, its `atlas` folder

    @classmethod
    def from_row(cls, row: Any) -> Account:
        return cls(row.id, row.email, row.nickname, row.access_key)
