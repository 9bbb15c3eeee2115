"""Every cell of the reconciliation table (docs/reconciliation.md) and the sweep's
deadline rules."""
from __future__ import annotations

import pytest

from common.status import SessionStatus as S
from manager.reconcile import (
    Act,
    Action,
    Limits,
    Seen,
    SessionView,
    decide,
    kept,
    overdue,
    reconcile,
)

L = Limits(settle=3, pending=30, preparing=90, restarting=90, terminating=60,
           unknown_extra=10)
K = "k1"
YOUNG, SETTLED, OLD = 1.0, 10.0, 100.0  # seconds in the status


def view(status: S, age: float, **kw: object) -> SessionView:
    return SessionView(K, status, age, **kw)  # type: ignore[arg-type]


def act(a: Action) -> tuple[Act, S | None, str | None]:
    return a.act, a.status, a.reason


KEEP = (Act.KEEP, None, None)
DESTROY = (Act.DESTROY, None, "no-live-session")

CELLS = [
    # (db status or None, age, orphaned, seen) -> (act, new status, reason)
    (None, 0, False, Seen.RUNNING, DESTROY),
    (None, 0, False, Seen.CREATING, DESTROY),
    (None, 0, False, Seen.ABSENT, KEEP),
    *[(s, YOUNG, False, seen, DESTROY if seen is not Seen.ABSENT else KEEP)
      for s in (S.TERMINATED, S.ERROR, S.CANCELLED) for seen in Seen],
    *[(s, age, False, seen, KEEP)
      for s in (S.PENDING, S.SCHEDULED) for age in (YOUNG, OLD) for seen in Seen],
    (S.PREPARING, YOUNG, False, Seen.RUNNING, KEEP),  # the create reply is on its way
    (S.PREPARING, OLD, False, Seen.RUNNING, (Act.MARK, S.RUNNING, "recovered")),
    (S.PREPARING, SETTLED, True, Seen.RUNNING, (Act.MARK, S.RUNNING, "recovered")),
    (S.PREPARING, YOUNG, True, Seen.RUNNING, (Act.MARK, S.RUNNING, "recovered")),
    (S.PREPARING, YOUNG, False, Seen.CREATING, KEEP),
    (S.PREPARING, OLD, False, Seen.CREATING, KEEP),
    (S.PREPARING, OLD, True, Seen.CREATING, KEEP),
    (S.PREPARING, YOUNG, False, Seen.ABSENT, KEEP),  # CreateKernel still in transit
    (S.PREPARING, YOUNG, True, Seen.ABSENT, KEEP),
    (S.PREPARING, SETTLED, True, Seen.ABSENT, (Act.MARK, S.ERROR, "creation-lost")),
    (S.PREPARING, OLD, False, Seen.ABSENT, (Act.MARK, S.ERROR, "creation-lost")),
    (S.RUNNING, YOUNG, False, Seen.RUNNING, KEEP),
    (S.RUNNING, OLD, False, Seen.RUNNING, KEEP),
    (S.RUNNING, OLD, False, Seen.CREATING, KEEP),
    (S.RUNNING, YOUNG, False, Seen.ABSENT, KEEP),  # heartbeat older than the create reply
    (S.RUNNING, SETTLED, False, Seen.ABSENT, (Act.MARK, S.TERMINATED, "container-vanished")),
    (S.RESTARTING, SETTLED, False, Seen.RUNNING, KEEP),
    (S.RESTARTING, OLD, False, Seen.RUNNING, (Act.MARK, S.RUNNING, "recovered")),
    (S.RESTARTING, OLD, False, Seen.CREATING, KEEP),
    (S.RESTARTING, SETTLED, False, Seen.ABSENT, KEEP),
    (S.RESTARTING, OLD, False, Seen.ABSENT, (Act.MARK, S.TERMINATED, "container-vanished")),
    (S.RESTARTING, SETTLED, True, Seen.RUNNING, (Act.MARK, S.RUNNING, "recovered")),
    (S.RESTARTING, SETTLED, True, Seen.CREATING, KEEP),
    (S.RESTARTING, YOUNG, True, Seen.ABSENT, KEEP),
    (S.RESTARTING, SETTLED, True, Seen.ABSENT, (Act.MARK, S.TERMINATED, "container-vanished")),
    (S.TERMINATING, YOUNG, False, Seen.RUNNING, KEEP),  # the destroy call is in flight
    (S.TERMINATING, YOUNG, False, Seen.CREATING, KEEP),
    (S.TERMINATING, OLD, False, Seen.RUNNING, (Act.DESTROY, None, "destroy-retry")),
    (S.TERMINATING, OLD, False, Seen.CREATING, (Act.DESTROY, None, "destroy-retry")),
    (S.TERMINATING, YOUNG, True, Seen.RUNNING, (Act.DESTROY, None, "destroy-retry")),
    (S.TERMINATING, YOUNG, True, Seen.CREATING, (Act.DESTROY, None, "destroy-retry")),
    (S.TERMINATING, YOUNG, False, Seen.ABSENT, KEEP),
    (S.TERMINATING, SETTLED, False, Seen.ABSENT,
     (Act.MARK, S.TERMINATED, "user-requested")),
]


@pytest.mark.parametrize(("status", "age", "orphaned", "seen", "expected"), CELLS)
def test_every_cell(status: S | None, age: float, orphaned: bool, seen: Seen,
                    expected: tuple[Act, S | None, str | None]) -> None:
    v = None if status is None else view(status, age, orphaned=orphaned,
                                         reason="user-requested")
    got = decide(K, v, seen, L)
    assert act(got) == expected
    assert got.kernel_id == K and got.from_status == status  # compare-and-set source


def test_every_live_and_final_status_is_covered() -> None:
    covered = {c[0] for c in CELLS}
    assert covered == set(S) | {None}
    for status in S:
        assert {c[3] for c in CELLS if c[0] is status} == set(Seen), status


def test_terminating_without_a_reason_ends_container_gone() -> None:
    got = decide(K, view(S.TERMINATING, SETTLED), Seen.ABSENT, L)
    assert act(got) == (Act.MARK, S.TERMINATED, "container-gone")


def test_reconcile_a_whole_report() -> None:
    sessions = {
        "run": SessionView("run", S.RUNNING, OLD),
        "gone": SessionView("gone", S.RUNNING, OLD),
        "dead": SessionView("dead", S.ERROR, OLD, "agent-lost"),
        "prep": SessionView("prep", S.PREPARING, YOUNG),
    }
    actions = reconcile(sessions, ["run", "dead", "stray"], ["prep", "stray2"], L)
    assert [(a.kernel_id, a.act, a.status) for a in actions] == [
        ("dead", Act.DESTROY, None),
        ("gone", Act.MARK, S.TERMINATED),
        ("stray", Act.DESTROY, None),
        ("stray2", Act.DESTROY, None),
    ]
    assert kept(["run", "dead", "stray"], actions) == ["run"]


def test_reconcile_is_idempotent_once_applied() -> None:
    sessions = {"gone": SessionView("gone", S.RUNNING, OLD)}
    (first,) = reconcile(sessions, [], [], L)
    assert first.status is not None
    after = {"gone": SessionView("gone", first.status, 0.0, first.reason)}
    assert reconcile(after, [], [], L) == []


def test_a_kernel_both_running_and_creating_counts_as_running() -> None:
    sessions = {K: SessionView(K, S.PREPARING, OLD)}
    (a,) = reconcile(sessions, [K], [K], L)
    assert act(a) == (Act.MARK, S.RUNNING, "recovered")


# ---- the sweep's deadlines ---------------------------------------------------------


@pytest.mark.parametrize(("status", "age", "seen", "expected"), [
    (S.PENDING, 29, None, None),
    (S.PENDING, 31, None, (Act.MARK, S.CANCELLED, "pending-timeout")),
    (S.SCHEDULED, 31, Seen.ABSENT, (Act.MARK, S.CANCELLED, "scheduling-timeout")),
    (S.RUNNING, 10_000, None, None),
    (S.RUNNING, 10_000, Seen.RUNNING, None),
    (S.TERMINATED, 10_000, None, None),
    (S.PREPARING, 89, None, None),
    (S.PREPARING, 95, None, None),  # other replicas may still adopt it
    (S.PREPARING, 101, None, (Act.MARK_AND_DESTROY, S.ERROR, "creation-timeout")),
    (S.PREPARING, 91, Seen.RUNNING, (Act.MARK, S.RUNNING, "recovered")),
    (S.PREPARING, 500, Seen.RUNNING, (Act.MARK, S.RUNNING, "recovered")),
    (S.PREPARING, 91, Seen.ABSENT, (Act.MARK, S.ERROR, "creation-lost")),
    (S.PREPARING, 91, Seen.CREATING, None),  # the agent is still creating
    (S.PREPARING, 181, Seen.CREATING, (Act.MARK_AND_DESTROY, S.ERROR, "creation-timeout")),
    (S.RESTARTING, 101, None, (Act.MARK_AND_DESTROY, S.ERROR, "restart-timeout")),
    (S.RESTARTING, 91, Seen.ABSENT, (Act.MARK, S.TERMINATED, "container-vanished")),
    (S.RESTARTING, 91, Seen.RUNNING, (Act.MARK, S.RUNNING, "recovered")),
    (S.RESTARTING, 181, Seen.CREATING, (Act.MARK_AND_DESTROY, S.ERROR, "restart-timeout")),
    (S.TERMINATING, 59, Seen.RUNNING, None),
    (S.TERMINATING, 61, Seen.RUNNING, (Act.DESTROY, None, "destroy-retry")),
    (S.TERMINATING, 61, Seen.ABSENT, (Act.MARK, S.TERMINATED, "container-gone")),
    (S.TERMINATING, 121, Seen.RUNNING, (Act.MARK_AND_DESTROY, S.ERROR, "destroy-timeout")),
    (S.TERMINATING, 71, None, (Act.MARK_AND_DESTROY, S.ERROR, "destroy-timeout")),
])
def test_overdue(status: S, age: float, seen: Seen | None,
                 expected: tuple[Act, S | None, str | None] | None) -> None:
    got = overdue(view(status, age), seen, L)
    assert (None if got is None else act(got)) == expected


def test_limits_from_config_never_undercut_the_calls_they_cover() -> None:
    from manager.agent_sync import limits_from
    from manager.config import ManagerConfig

    config = ManagerConfig.model_validate({
        "link": {"create_timeout": 120, "request_timeout": 45, "heartbeat_timeout": 7},
        "reconcile": {"preparing_deadline": 10, "terminating_deadline": 10, "settle": 2,
                      "pending_deadline": 5},
    })
    limits = limits_from(config.link, config.reconcile)
    assert limits.preparing == 122 and limits.restarting == 122
    assert limits.terminating == 47 and limits.pending == 5 and limits.settle == 2
    assert limits.unknown_extra == 7
    defaults = ManagerConfig()
    assert defaults.reconcile.lost_grace == 300
    assert limits_from(defaults.link, defaults.reconcile).preparing == 90


def test_status_info_carries_the_owner_of_a_call() -> None:
    from manager.replica import public_info, split_owner, with_owner

    info = with_owner("user-requested", 42)
    assert split_owner(info) == ("user-requested", 42)
    assert split_owner(with_owner(None, 7)) == (None, 7)
    assert split_owner("agent-link-lost") == ("agent-link-lost", None)
    assert split_owner(None) == (None, None)
    assert split_owner("x|owner:notanumber") == ("x|owner:notanumber", None)
    assert public_info(info) == "user-requested" and public_info(with_owner(None, 1)) is None
