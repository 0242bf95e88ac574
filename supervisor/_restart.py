"""Decide whether and when a component that exited is started again.

Policy semantics follow systemd (``no``, ``on-failure``, ``always``); delays grow
exponentially (supervisord's linear backoff is a known cause of restart storms); a
systemd-like start limit turns a crash loop into ``failed``; exit code 78 (EX_CONFIG) is
never restarted (gunicorn's rule for workers that cannot boot).

Backoff reset rule: a run that lasted at least ``max(backoff_max_s, 10 s)`` counts as
healthy. A run longer than the longest delay cannot be part of a tight crash loop, and
10 s keeps tiny caps meaningful. The first restart after a healthy run happens at once (a
wallet that crashed after hours is wanted back now, not 100 ms later: "back in 20 ms");
the delays of the next failures start again from ``backoff_initial_s``. So at most one
restart per healthy run is immediate: no zero-delay loop.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ._config import RestartConfig
from ._state import ComponentState, ExitReason, classify_exit

__all__ = ["STABLE_RUN_MIN_S", "Decision", "RestartTracker"]

STABLE_RUN_MIN_S = 10.0


# Failures of a run that got going (as against a start that never did): a long run
# before one of them still resets the backoff.
_RAN_FIRST = (None, ExitReason.LINK_LOST, ExitReason.WATCHDOG)


@dataclass(frozen=True)
class Decision:
    """What to do after an exit.

    ``restart``: start again after ``delay_s`` seconds (0.0 when not restarting).
    ``reason``: why the run ended, or START_LIMIT_HIT when the limit stopped a restart.
    ``start_limit_hit``: the restart the policy wanted was refused by the start limit.
    ``next_state``: AUTO_RESTART, STOPPED (clean or requested) or FAILED.
    """

    restart: bool
    delay_s: float
    reason: ExitReason
    start_limit_hit: bool
    next_state: ComponentState


class RestartTracker:
    """Restart bookkeeping for one component: backoff level and recent start times.

    Pure logic driven by an injectable clock; never blocks, never sleeps.
    """

    def __init__(self, config: RestartConfig,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._starts: deque[float] = deque()
        self._last_start: float | None = None
        self._failures = 0  # restarts since the last healthy run; the backoff exponent

    @property
    def consecutive_restarts(self) -> int:
        """Automatic restarts decided since the last healthy run or reset."""
        return self._failures

    def record_start(self) -> None:
        """Note that the component is being started now (every attempt, automatic or
        not, including ones whose spawn then fails)."""
        now = self._clock()
        self._last_start = now
        if self.config.start_limit_interval_s > 0:  # else no limit: nothing to remember
            self._starts.append(now)
            self._limit_hit(now)  # drops the starts that left the interval

    def reset(self) -> None:
        """Forget start history and backoff: the user explicitly started or restarted
        the component, which also clears a hit start limit (systemd's reset-failed)."""
        self._starts.clear()
        self._last_start = None
        self._failures = 0

    def decide(self, exit_code: int | None, signal: int | None, requested_stop: bool, *,
               failure: ExitReason | None = None) -> Decision:
        """Decide what follows an exit.

        Give ``exit_code`` or ``signal`` from the wait status; for a start that failed
        without an exit status (spawn or bootstrap failure) pass ``failure`` instead.
        ``requested_stop`` means the supervisor stopped it on purpose (user, dependency,
        shutdown): never restarted. Raises ValueError when no exit kind is given.
        """
        reason = failure if failure is not None else classify_exit(exit_code, signal)
        if requested_stop:
            return Decision(False, 0.0, ExitReason.STOPPED_BY_USER, False,
                            ComponentState.STOPPED)
        if not self._policy_restarts(reason):
            final = (ComponentState.STOPPED if reason is ExitReason.SUCCESS
                     else ComponentState.FAILED)
            return Decision(False, 0.0, reason, False, final)
        now = self._clock()
        # Only a run that got going counts as healthy: a start that failed after a long
        # bootstrap timeout must not reset the backoff.
        healthy = (failure in _RAN_FIRST and self._last_start is not None
                   and now - self._last_start >= self._stable_after())
        cfg = self.config
        if healthy:  # at once; the backoff starts from its initial delay next time
            self._failures = 0
            delay = 0.0
        else:
            try:
                delay = min(cfg.backoff_initial_s * cfg.backoff_multiplier ** self._failures,
                            cfg.backoff_max_s)
            except OverflowError:  # ~1000 failures in a row: the power leaves float range
                delay = cfg.backoff_max_s
        if self._limit_hit(now + delay):
            return Decision(False, 0.0, ExitReason.START_LIMIT_HIT, True,
                            ComponentState.FAILED)
        if not healthy:
            self._failures += 1
        return Decision(True, delay, reason, False, ComponentState.AUTO_RESTART)

    def waiting_for_space(self) -> Decision:
        """What follows a start that failed (EX_TEMPFAIL) because the component's datadir
        is full: another try after the capped backoff (at least 1 s), not counted
        towards the start limit. Space comes back by someone's action (files deleted, a
        budget grown), not by giving up: the component then starts by itself."""
        if self._starts:
            self._starts.pop()
        return Decision(True, max(self.config.backoff_max_s, 1.0), ExitReason.DISK_FULL,
                        False, ComponentState.AUTO_RESTART)

    def _policy_restarts(self, reason: ExitReason) -> bool:
        if reason is ExitReason.BOOT_REFUSED:
            return False
        match self.config.policy:
            case "no":
                return False
            case "on-failure":
                return reason is not ExitReason.SUCCESS
            case "always":
                return True

    def _stable_after(self) -> float:
        return max(self.config.backoff_max_s, STABLE_RUN_MIN_S)

    def _limit_hit(self, start_at: float) -> bool:
        """True when a start at ``start_at`` would exceed burst starts within interval.

        Judged at the time the restart would happen (after the delay), so a long backoff
        can itself bring the rate back under the limit. An interval of 0 disables it.
        """
        interval = self.config.start_limit_interval_s
        if interval <= 0:
            return False
        while self._starts and self._starts[0] <= start_at - interval:
            self._starts.popleft()
        return len(self._starts) >= self.config.start_limit_burst
