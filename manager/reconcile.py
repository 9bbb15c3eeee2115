"""Reconciliation rules: what to do when the database and an agent disagree.

Pure functions, no I/O. ``decide`` settles one kernel from the database's view of
its session and what its agent reports (running, creating or absent); ``reconcile``
applies it to a whole heartbeat; ``overdue`` is the deadline rule of the sweep for
sessions stuck in a non-final state. docs/reconciliation.md holds the same rules
as a table, one row per cell, with the reasons; tests/unit/manager/test_reconcile.py
tests every cell.

Every action names the status it was decided from, so applying it is a compare-and-
set: a replica that applies it second (or after the session moved on) changes nothing.
"""
from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from common.status import SessionStatus

_S = SessionStatus


class Seen(enum.StrEnum):
    """What the agent reports about one kernel."""

    RUNNING = "running"  # in Heartbeat.kernels / Join.kernels
    CREATING = "creating"  # in Heartbeat.creating / Join.creating
    ABSENT = "absent"  # in neither


class Act(enum.StrEnum):
    KEEP = "keep"  # nothing to do (an owner is on it, or all agree)
    DESTROY = "destroy"  # send DestroyKernel: the agent holds what no live session owns
    MARK = "mark"  # move the session to ``status`` with ``reason``
    MARK_AND_DESTROY = "mark-and-destroy"  # both


@dataclass(frozen=True, slots=True)
class SessionView:
    """The database's view of one session on one agent."""

    kernel_id: str
    status: SessionStatus
    age: float  # seconds since its last status change
    reason: str | None = None  # status_info
    # PREPARING/RESTARTING/TERMINATING whose call nobody waits for any more (the call
    # gave up when the link dropped, or the replica that made it is gone)
    orphaned: bool = False


@dataclass(frozen=True, slots=True)
class Limits:
    """How long each state may last before nobody is considered to own it (seconds)."""

    settle: float = 3.0  # a reply or heartbeat may still be on its way
    pending: float = 30.0  # PENDING and SCHEDULED (nothing sent to an agent yet)
    preparing: float = 90.0  # PREPARING: the create call's own limit plus slack
    restarting: float = 90.0
    terminating: float = 60.0  # TERMINATING: the destroy call's own limit plus slack
    unknown_extra: float = 10.0  # extra wait when this replica has no report to judge by


@dataclass(frozen=True, slots=True)
class Action:
    act: Act
    kernel_id: str
    from_status: SessionStatus | None = None  # compare-and-set: only from this status
    status: SessionStatus | None = None
    reason: str | None = None

    @property
    def destroys(self) -> bool:
        return self.act in (Act.DESTROY, Act.MARK_AND_DESTROY)

    @property
    def marks(self) -> bool:
        return self.act in (Act.MARK, Act.MARK_AND_DESTROY)


def _keep(kid: str, view: SessionView | None = None) -> Action:
    return Action(Act.KEEP, kid, view.status if view else None)


def _mark(view: SessionView, status: SessionStatus, reason: str | None,
          destroy: bool = False) -> Action:
    act = Act.MARK_AND_DESTROY if destroy else Act.MARK
    return Action(act, view.kernel_id, view.status, status, reason)


def _call_owned(view: SessionView, deadline: float) -> bool:
    """The call that put the session in its state still waits for the agent's reply."""
    return not view.orphaned and view.age < deadline


def decide(kernel_id: str, view: SessionView | None, seen: Seen, limits: Limits) -> Action:
    """One cell of the table in docs/reconciliation.md."""
    if view is None or view.status.is_final:
        if seen is Seen.ABSENT:
            return _keep(kernel_id, view)
        status = view.status if view else None
        return Action(Act.DESTROY, kernel_id, status, None, "no-live-session")
    match view.status:
        case _S.PENDING | _S.SCHEDULED:
            return _keep(kernel_id, view)  # nothing sent yet; the sweep's deadline
        case _S.PREPARING:
            return _decide_preparing(view, seen, limits)
        case _S.RUNNING:
            if seen is Seen.ABSENT and view.age >= limits.settle:
                return _mark(view, _S.TERMINATED, "container-vanished")
            return _keep(kernel_id, view)
        case _S.RESTARTING:
            if seen is Seen.CREATING or _call_owned(view, limits.restarting):
                return _keep(kernel_id, view)  # the restart call is still in flight
            if seen is Seen.RUNNING:  # restarted, but whoever asked is gone
                return _mark(view, _S.RUNNING, "recovered")
            if view.age < limits.settle:
                return _keep(kernel_id, view)
            return _mark(view, _S.TERMINATED, "container-vanished")
        case _S.TERMINATING:
            return _decide_terminating(view, seen, limits)
    return _keep(kernel_id, view)  # pragma: no cover - every live status is matched


def _decide_preparing(view: SessionView, seen: Seen, limits: Limits) -> Action:
    if seen is Seen.CREATING or _call_owned(view, limits.preparing):
        return _keep(view.kernel_id, view)
    if seen is Seen.RUNNING:  # created, but whoever asked is gone: adopt it
        return _mark(view, _S.RUNNING, "recovered")
    if view.age < limits.settle:
        return _keep(view.kernel_id, view)
    return _mark(view, _S.ERROR, "creation-lost")


def _decide_terminating(view: SessionView, seen: Seen, limits: Limits) -> Action:
    if seen is Seen.ABSENT:
        if view.age < limits.settle:
            return _keep(view.kernel_id, view)  # the destroy reply is on its way
        return _mark(view, _S.TERMINATED, view.reason or "container-gone")
    if _call_owned(view, limits.terminating):
        return _keep(view.kernel_id, view)  # the destroy call is still in flight
    return Action(Act.DESTROY, view.kernel_id, view.status, None, "destroy-retry")


def reconcile(sessions: Mapping[str, SessionView], running: Iterable[str],
              creating: Iterable[str], limits: Limits) -> list[Action]:
    """Every action (KEEP left out) for one agent's report.

    ``sessions``: the database's rows for this agent's live sessions and for every
    kernel the agent reported (whatever their status), keyed by kernel id.
    """
    run, make = set(running), set(creating) - set(running)
    out = []
    for kid in sorted(set(sessions) | run | make):
        seen = Seen.RUNNING if kid in run else Seen.CREATING if kid in make else Seen.ABSENT
        action = decide(kid, sessions.get(kid), seen, limits)
        if action.act is not Act.KEEP:
            out.append(action)
    return out


def kept(reported: Iterable[str], actions: Iterable[Action]) -> list[str]:
    """The reported kernels the agent should keep (JoinAccepted.keep_kernels)."""
    doomed = {a.kernel_id for a in actions if a.destroys}
    return sorted(set(reported) - doomed)


def overdue(view: SessionView, seen: Seen | None, limits: Limits) -> Action | None:
    """The sweep's rule for a session stuck past its state's deadline, or None.

    ``seen`` is what this replica last heard from the agent about the kernel (None:
    no fresh report here — the agent is lost or not connected to this replica).
    """
    status = view.status
    if status in (_S.PENDING, _S.SCHEDULED):
        if view.age < limits.pending:
            return None
        reason = "pending-timeout" if status is _S.PENDING else "scheduling-timeout"
        return _mark(view, _S.CANCELLED, reason)
    deadline = {_S.PREPARING: limits.preparing, _S.RESTARTING: limits.restarting,
                _S.TERMINATING: limits.terminating}.get(status)
    if deadline is None or view.age < deadline:
        return None  # RUNNING has no deadline; final states are done
    if seen is not None:
        action = decide(view.kernel_id, view, seen, limits)
        if action.marks or (action.destroys and view.age < 2 * deadline):
            return action
        if view.age < 2 * deadline:
            return None  # an owner is still on it (the agent is creating, say)
    elif view.age < deadline + limits.unknown_extra:
        return None  # give the replicas that hear the agent time to reconcile first
    reason = {_S.PREPARING: "creation-timeout", _S.RESTARTING: "restart-timeout",
              _S.TERMINATING: "destroy-timeout"}[status]
    return _mark(view, _S.ERROR, reason, destroy=True)
