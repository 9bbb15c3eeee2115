"""Lifecycle states of sessions and agents, and the transitions allowed between them.

    PENDING → SCHEDULED → PREPARING → RUNNING → TERMINATING → TERMINATED
        any non-final state → ERROR | CANCELLED;  RUNNING ⇄ RESTARTING
"""
from __future__ import annotations

import enum


class SessionStatus(enum.StrEnum):
    PENDING = "PENDING"
    SCHEDULED = "SCHEDULED"
    PREPARING = "PREPARING"
    RUNNING = "RUNNING"
    RESTARTING = "RESTARTING"
    TERMINATING = "TERMINATING"
    TERMINATED = "TERMINATED"
    ERROR = "ERROR"
    CANCELLED = "CANCELLED"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset(
    {SessionStatus.TERMINATED, SessionStatus.ERROR, SessionStatus.CANCELLED}
)
LIVE_STATUSES = frozenset(set(SessionStatus) - FINAL_STATUSES)
# the same as the strings stored in kernels.status, sorted (for SQL ``IN`` clauses)
LIVE_STATUS_VALUES: tuple[str, ...] = tuple(sorted(s.value for s in LIVE_STATUSES))

_S = SessionStatus
ALLOWED_TRANSITIONS: dict[SessionStatus, frozenset[SessionStatus]] = {
    _S.PENDING: frozenset({_S.SCHEDULED, _S.CANCELLED, _S.ERROR}),
    _S.SCHEDULED: frozenset({_S.PREPARING, _S.CANCELLED, _S.ERROR}),
    _S.PREPARING: frozenset({_S.RUNNING, _S.ERROR, _S.CANCELLED, _S.TERMINATING}),
    _S.RUNNING: frozenset({_S.RESTARTING, _S.TERMINATING, _S.TERMINATED, _S.ERROR}),
    _S.RESTARTING: frozenset({_S.RUNNING, _S.TERMINATING, _S.TERMINATED, _S.ERROR}),
    _S.TERMINATING: frozenset({_S.TERMINATED, _S.ERROR}),
    _S.TERMINATED: frozenset(),
    _S.ERROR: frozenset(),
    _S.CANCELLED: frozenset(),
}


def can_transition(old: SessionStatus, new: SessionStatus) -> bool:
    return new in ALLOWED_TRANSITIONS[old]


class AgentStatus(enum.StrEnum):
    ALIVE = "ALIVE"
    LOST = "LOST"
    TERMINATED = "TERMINATED"
