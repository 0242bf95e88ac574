"""Component state machine: the transition table exhaustively, the log event, the clock."""

from __future__ import annotations

import itertools
import signal

import pytest
from structlog.testing import capture_logs

from bitcoin_supervisor.supervisor._state import (
    EX_CONFIG,
    TRANSITIONS,
    ComponentState,
    ExitReason,
    PublicState,
    StateMachine,
    TransitionError,
    classify_exit,
    public_state,
)

S = ComponentState

# The lifecycle written out edge by edge, independently of the table in the module, so a
# change to either one shows up here.
EXPECTED_EDGES = {
    (S.STOPPED, S.STARTING), (S.STOPPED, S.FAILED),
    (S.STARTING, S.RUNNING), (S.STARTING, S.STOP_SIGTERM), (S.STARTING, S.AUTO_RESTART),
    (S.STARTING, S.FAILED), (S.STARTING, S.STOPPED),
    (S.RUNNING, S.STOP_SIGTERM), (S.RUNNING, S.AUTO_RESTART), (S.RUNNING, S.FAILED),
    (S.RUNNING, S.STOPPED),
    (S.STOP_SIGTERM, S.STOP_SIGKILL), (S.STOP_SIGTERM, S.STOPPED),
    (S.STOP_SIGTERM, S.FAILED), (S.STOP_SIGTERM, S.AUTO_RESTART),
    (S.STOP_SIGKILL, S.STOPPED), (S.STOP_SIGKILL, S.FAILED), (S.STOP_SIGKILL, S.AUTO_RESTART),
    (S.AUTO_RESTART, S.STARTING), (S.AUTO_RESTART, S.STOPPED), (S.AUTO_RESTART, S.FAILED),
    (S.FAILED, S.STARTING), (S.FAILED, S.STOPPED),
}


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_table_covers_every_state() -> None:
    assert set(TRANSITIONS) == set(ComponentState)
    table_edges = {(old, new) for old, news in TRANSITIONS.items() for new in news}
    assert table_edges == EXPECTED_EDGES


@pytest.mark.parametrize(("old", "new"), list(itertools.product(ComponentState, repeat=2)),
                         ids=lambda s: s.value)
def test_every_pair_allowed_or_refused_as_the_table_says(old: ComponentState,
                                                         new: ComponentState) -> None:
    machine = StateMachine("wallet", initial=old)
    assert machine.can_enter(new) == ((old, new) in EXPECTED_EDGES)
    if (old, new) in EXPECTED_EDGES:
        machine.set_state(new, ExitReason.EXIT_CODE)
        assert machine.state is new
        assert machine.reason is ExitReason.EXIT_CODE
    else:
        with pytest.raises(TransitionError, match=f"{old.value} -> {new.value} is not allowed"):
            machine.set_state(new, ExitReason.EXIT_CODE)
        assert machine.state is old
        assert machine.reason is ExitReason.NONE


def test_transition_logs_and_records_time() -> None:
    clock = FakeClock()
    machine = StateMachine("wallet", clock=clock)
    assert machine.changed_at == 100.0
    clock.now = 105.5
    with capture_logs() as logs:
        machine.set_state(S.STARTING)
        clock.now = 106.0
        machine.set_state(S.AUTO_RESTART, ExitReason.SIGNAL)
    assert machine.changed_at == 106.0
    assert [(e["event"], e["component"], e["old"], e["new"], e["reason"]) for e in logs] == [
        ("component.state_changed", "wallet", "stopped", "starting", "none"),
        ("component.state_changed", "wallet", "starting", "auto-restart", "signal"),
    ]


def test_refused_transition_logs_nothing() -> None:
    machine = StateMachine("node")
    with capture_logs() as logs, pytest.raises(TransitionError):
        machine.set_state(S.RUNNING)
    assert logs == []


def test_public_state_mapping() -> None:
    expected = {
        S.STOPPED: PublicState.INACTIVE,
        S.STARTING: PublicState.ACTIVATING,
        S.RUNNING: PublicState.ACTIVE,
        S.STOP_SIGTERM: PublicState.DEACTIVATING,
        S.STOP_SIGKILL: PublicState.DEACTIVATING,
        S.AUTO_RESTART: PublicState.ACTIVATING,
        S.FAILED: PublicState.FAILED,
    }
    assert {s: public_state(s) for s in ComponentState} == expected
    assert StateMachine("x", initial=S.FAILED).public is PublicState.FAILED


@pytest.mark.parametrize(("exit_code", "sig", "reason"), [
    (0, None, ExitReason.SUCCESS),
    (1, None, ExitReason.EXIT_CODE),
    (EX_CONFIG, None, ExitReason.BOOT_REFUSED),
    (None, signal.SIGKILL, ExitReason.SIGNAL),
    (None, signal.SIGSEGV, ExitReason.SIGNAL),
    (None, signal.SIGSYS, ExitReason.SANDBOX),
])
def test_classify_exit(exit_code: int | None, sig: int | None, reason: ExitReason) -> None:
    assert classify_exit(exit_code, sig) is reason


def test_classify_exit_needs_exactly_one_kind() -> None:
    with pytest.raises(ValueError):
        classify_exit(None, None)
    with pytest.raises(ValueError):
        classify_exit(1, 9)
