"""Restart decisions: policies x exit kinds, backoff growth, cap, reset, start limit."""

from __future__ import annotations

import signal

import pytest

from bitcoin_supervisor.supervisor._config import RestartConfig
from bitcoin_supervisor.supervisor._restart import Decision, RestartTracker
from bitcoin_supervisor.supervisor._state import EX_CONFIG, ComponentState, ExitReason


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def tracker(policy: str = "on-failure", **kw: float) -> tuple[RestartTracker, FakeClock]:
    clock = FakeClock()
    cfg = RestartConfig(policy, **kw)  # type: ignore[arg-type]
    t = RestartTracker(cfg, clock)
    t.record_start()
    return t, clock


# exit kind -> (exit_code, signal)
KINDS = {
    "clean": (0, None),
    "code": (3, None),
    "signal": (None, int(signal.SIGSEGV)),
    "seccomp": (None, int(signal.SIGSYS)),
    "ex_config": (EX_CONFIG, None),
}
# policy -> exit kinds that restart (when the user did not ask for the stop)
RESTARTS = {
    "no": set(),
    "on-failure": {"code", "signal", "seccomp"},
    "always": {"clean", "code", "signal", "seccomp"},
}
REASONS = {
    "clean": ExitReason.SUCCESS, "code": ExitReason.EXIT_CODE, "signal": ExitReason.SIGNAL,
    "seccomp": ExitReason.SANDBOX, "ex_config": ExitReason.BOOT_REFUSED,
}


@pytest.mark.parametrize("policy", list(RESTARTS))
@pytest.mark.parametrize("kind", list(KINDS))
def test_policy_by_exit_kind(policy: str, kind: str) -> None:
    t, _ = tracker(policy)
    code, sig = KINDS[kind]
    decision = t.decide(code, sig, requested_stop=False)
    assert decision.restart == (kind in RESTARTS[policy])
    assert decision.reason is REASONS[kind]
    assert not decision.start_limit_hit
    if decision.restart:
        assert decision.next_state is ComponentState.AUTO_RESTART
        assert decision.delay_s == 0.1
    else:
        assert decision.delay_s == 0.0
        assert decision.next_state is (ComponentState.STOPPED if kind == "clean"
                                       else ComponentState.FAILED)


@pytest.mark.parametrize("policy", list(RESTARTS))
@pytest.mark.parametrize("kind", list(KINDS))
def test_requested_stop_never_restarts(policy: str, kind: str) -> None:
    t, _ = tracker(policy)
    code, sig = KINDS[kind]
    assert t.decide(code, sig, requested_stop=True) == Decision(
        False, 0.0, ExitReason.STOPPED_BY_USER, False, ComponentState.STOPPED)


def test_failure_without_exit_status() -> None:
    t, _ = tracker("on-failure")
    decision = t.decide(None, None, False, failure=ExitReason.BOOTSTRAP_FAILED)
    assert decision.restart and decision.reason is ExitReason.BOOTSTRAP_FAILED
    with pytest.raises(ValueError):
        t.decide(None, None, False)


def crash_loop(t: RestartTracker, clock: FakeClock, n: int, run_s: float = 0.0) -> list[float]:
    """Crash n times, each run lasting run_s, restarting after each decided delay."""
    delays = []
    for _ in range(n):
        clock.now += run_s
        d = t.decide(1, None, False)
        assert d.restart, d
        delays.append(d.delay_s)
        clock.now += d.delay_s
        t.record_start()
    return delays


def test_backoff_doubles_up_to_the_cap() -> None:
    t, clock = tracker(backoff_initial_s=0.1, backoff_max_s=1.0, start_limit_burst=100)
    assert crash_loop(t, clock, 7) == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0])
    assert t.consecutive_restarts == 7


def test_backoff_multiplier() -> None:
    t, clock = tracker(backoff_initial_s=1.0, backoff_max_s=100.0, backoff_multiplier=3.0,
                       start_limit_burst=100, start_limit_interval_s=1.0)
    assert crash_loop(t, clock, 4) == pytest.approx([1.0, 3.0, 9.0, 27.0])


def test_backoff_resets_after_a_stable_run() -> None:
    t, clock = tracker(backoff_max_s=5.0, start_limit_burst=100)
    assert crash_loop(t, clock, 3) == pytest.approx([0.1, 0.2, 0.4])
    # 9.9 s up: shorter than max(backoff_max_s, 10 s), still a crash loop.
    assert crash_loop(t, clock, 1, run_s=9.9) == pytest.approx([0.8])
    # 10 s up counts as healthy: restarted at once, and the backoff starts over.
    assert crash_loop(t, clock, 2, run_s=10.0) == pytest.approx([0.0, 0.0])
    assert crash_loop(t, clock, 3) == pytest.approx([0.1, 0.2, 0.4])


def test_at_most_one_immediate_restart_per_healthy_run() -> None:
    t, clock = tracker(backoff_max_s=5.0, start_limit_burst=100)
    # A long run, then a crash loop: only the first restart skips the delay.
    assert crash_loop(t, clock, 1, run_s=3600.0) == pytest.approx([0.0])
    assert crash_loop(t, clock, 4) == pytest.approx([0.1, 0.2, 0.4, 0.8])


def test_stable_threshold_follows_a_large_cap() -> None:
    t, clock = tracker(backoff_max_s=60.0, start_limit_burst=100)
    crash_loop(t, clock, 3)
    assert crash_loop(t, clock, 1, run_s=30.0) == pytest.approx([0.8])
    assert crash_loop(t, clock, 1, run_s=60.0) == pytest.approx([0.0])


def test_start_limit_hits_after_burst_starts_within_interval() -> None:
    t, clock = tracker(start_limit_burst=3, start_limit_interval_s=10.0)
    crash_loop(t, clock, 2)  # 3 starts so far (first + 2 restarts)
    decision = t.decide(1, None, False)
    assert decision == Decision(False, 0.0, ExitReason.START_LIMIT_HIT, True,
                                ComponentState.FAILED)


def test_start_limit_window_slides() -> None:
    t, clock = tracker(start_limit_burst=3, start_limit_interval_s=10.0)
    crash_loop(t, clock, 2)
    clock.now += 10.0  # the oldest starts leave the window
    decision = t.decide(1, None, False)
    assert decision.restart and not decision.start_limit_hit


def test_start_limit_is_judged_at_the_restart_time() -> None:
    # A delay long enough to push the restart past the window avoids the limit.
    t, _ = tracker(backoff_initial_s=11.0, backoff_max_s=11.0, start_limit_burst=1,
                       start_limit_interval_s=10.0)
    assert t.decide(1, None, False).restart


def test_reset_clears_start_limit_and_backoff() -> None:
    t, clock = tracker(start_limit_burst=2)
    crash_loop(t, clock, 1)
    assert t.decide(1, None, False).start_limit_hit
    t.reset()
    assert t.consecutive_restarts == 0
    t.record_start()
    decision = t.decide(1, None, False)
    assert decision.restart and decision.delay_s == 0.1


def test_zero_interval_disables_the_start_limit() -> None:
    t, clock = tracker(start_limit_burst=1, start_limit_interval_s=0.0, backoff_max_s=0.1)
    assert all(d == 0.1 for d in crash_loop(t, clock, 20))


def test_start_history_stays_bounded() -> None:
    # A component crashing for days must not grow the supervisor: only the starts inside
    # the start-limit interval are kept, and none without a limit.
    for interval, kept in ((10.0, 5), (0.0, 0)):
        t, clock = tracker(backoff_initial_s=1.0, backoff_max_s=2.0,
                           start_limit_burst=1000, start_limit_interval_s=interval)
        crash_loop(t, clock, 5000)
        assert len(t._starts) <= kept, (interval, len(t._starts))
