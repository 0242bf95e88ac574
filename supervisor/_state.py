"""Component lifecycle states, exit reasons and the one place a state may change.

Modelled on systemd's ServiceState/ServiceResult: the detailed state names the phase
(including each kill step), the reason says *why* the last run ended, and a small public
state is what ``status`` shows.
"""

from __future__ import annotations

import enum
import signal as _signal
import time
from collections.abc import Callable, Mapping
from typing import assert_never

from bitcoin_supervisor.interfaces import SupervisorError
from bitcoin_supervisor.log import get_logger

__all__ = [
    "EX_CONFIG",
    "EX_TEMPFAIL",
    "TRANSITIONS",
    "ComponentState",
    "ExitReason",
    "PublicState",
    "StateMachine",
    "TransitionError",
    "classify_exit",
    "public_state",
]

# Reserved exit code (sysexits.h EX_CONFIG): "I cannot boot with these settings". Like
# gunicorn's WORKER_BOOT_ERROR it stops a restart loop that could never succeed.
EX_CONFIG = 78
# EX_TEMPFAIL: "I could not start this time" (a busy port, a full disk): an ordinary failure.
EX_TEMPFAIL = 75


class ComponentState(enum.Enum):
    """Where a component is in its lifecycle (values are what logs and status show)."""

    STOPPED = "stopped"
    STARTING = "starting"            # spawned, bootstrapping Init and brokering
    RUNNING = "running"
    STOP_SIGTERM = "stop-sigterm"    # SIGTERM sent, waiting up to stop_timeout_s
    STOP_SIGKILL = "stop-sigkill"    # SIGKILL sent, waiting for the exit
    AUTO_RESTART = "auto-restart"    # exited, waiting out the restart backoff
    FAILED = "failed"                # start limit hit or cannot boot; needs a user action


class ExitReason(enum.Enum):
    """Why a component's last run ended (or did not begin)."""

    NONE = "none"                          # no run has ended yet / currently fine
    SUCCESS = "success"                    # exited with code 0
    EXIT_CODE = "exit-code"                # exited with a non-zero code
    SIGNAL = "signal"                      # killed by a signal we did not send
    BOOT_REFUSED = "boot-refused"          # exited with EX_CONFIG (78): bad settings
    SPAWN_FAILED = "spawn-failed"          # the process could not be created
    BOOTSTRAP_FAILED = "bootstrap-failed"  # Init bootstrap or brokering failed
    TIMEOUT = "timeout"                    # did not start or stop in time
    START_LIMIT_HIT = "start-limit-hit"    # too many starts within the interval
    DEPENDENCY = "dependency"              # a component it depends on went down
    STOPPED_BY_USER = "stopped-by-user"    # `stop`/`restart` asked for it
    SHUTDOWN = "shutdown"                  # the daemon itself is shutting down
    SANDBOX = "sandbox"                    # killed by its seccomp filter (SIGSYS)
    UNCONFINED = "unconfined"              # /proc showed it not confined as planned
    LINK_LOST = "link-lost"                # its IPC link broke while the process lived on
    WATCHDOG = "watchdog"                  # a health check got no answer in time (a hang)
    DISK_FULL = "disk-full"                # could not start (75) with its datadir full


class PublicState(enum.Enum):
    """The small state ``status`` shows, systemd's unit active states."""

    ACTIVE = "active"
    ACTIVATING = "activating"
    DEACTIVATING = "deactivating"
    INACTIVE = "inactive"
    FAILED = "failed"


_S = ComponentState
TRANSITIONS: Mapping[ComponentState, frozenset[ComponentState]] = {
    # FAILED straight from STOPPED: a dependency failed, so this one cannot start.
    _S.STOPPED: frozenset({_S.STARTING, _S.FAILED}),
    _S.STARTING: frozenset({_S.RUNNING, _S.STOP_SIGTERM, _S.AUTO_RESTART, _S.FAILED,
                            _S.STOPPED}),
    _S.RUNNING: frozenset({_S.STOP_SIGTERM, _S.AUTO_RESTART, _S.FAILED, _S.STOPPED}),
    # A stop may end in FAILED/AUTO_RESTART when it was a kill after a failed start.
    _S.STOP_SIGTERM: frozenset({_S.STOP_SIGKILL, _S.STOPPED, _S.FAILED, _S.AUTO_RESTART}),
    _S.STOP_SIGKILL: frozenset({_S.STOPPED, _S.FAILED, _S.AUTO_RESTART}),
    _S.AUTO_RESTART: frozenset({_S.STARTING, _S.STOPPED, _S.FAILED}),
    _S.FAILED: frozenset({_S.STARTING, _S.STOPPED}),
}


def public_state(state: ComponentState) -> PublicState:
    """Map a detailed state onto the public one (auto-restart counts as activating,
    as in systemd). Never raises."""
    match state:
        case ComponentState.RUNNING:
            return PublicState.ACTIVE
        case ComponentState.STARTING | ComponentState.AUTO_RESTART:
            return PublicState.ACTIVATING
        case ComponentState.STOP_SIGTERM | ComponentState.STOP_SIGKILL:
            return PublicState.DEACTIVATING
        case ComponentState.STOPPED:
            return PublicState.INACTIVE
        case ComponentState.FAILED:
            return PublicState.FAILED
        case _:
            assert_never(state)


def classify_exit(exit_code: int | None, signal: int | None) -> ExitReason:
    """Reason for an exit the component chose or suffered (not one we asked for).

    Pass the exit code of a normal exit, or the signal number that killed the process.
    Raises ValueError when both or neither are given.
    """
    if (exit_code is None) == (signal is None):
        raise ValueError("give exactly one of exit_code and signal")
    if signal is not None:
        # SECCOMP_RET_KILL_PROCESS reports the process as killed by SIGSYS.
        return ExitReason.SANDBOX if signal == _signal.SIGSYS else ExitReason.SIGNAL
    if exit_code == 0:
        return ExitReason.SUCCESS
    return ExitReason.BOOT_REFUSED if exit_code == EX_CONFIG else ExitReason.EXIT_CODE


class TransitionError(SupervisorError):
    """A state change the transition table forbids: a bug in the caller, not user input."""


class StateMachine:
    """The state of one component; ``set_state`` is the only way to change it."""

    def __init__(self, component: str, *, clock: Callable[[], float] = time.monotonic,
                 initial: ComponentState = ComponentState.STOPPED) -> None:
        self.component = component
        self._clock = clock
        self._state = initial
        self._reason = ExitReason.NONE
        self._changed_at = clock()
        self._log = get_logger(component=component)

    @property
    def state(self) -> ComponentState:
        """The current detailed state."""
        return self._state

    @property
    def reason(self) -> ExitReason:
        """The reason given with the last transition."""
        return self._reason

    @property
    def public(self) -> PublicState:
        """The current public state."""
        return public_state(self._state)

    @property
    def changed_at(self) -> float:
        """Clock reading at the last transition (or at construction)."""
        return self._changed_at

    def can_enter(self, new: ComponentState) -> bool:
        """True when the table allows moving from the current state to ``new``."""
        return new in TRANSITIONS[self._state]

    def set_state(self, new: ComponentState, reason: ExitReason = ExitReason.NONE) -> None:
        """Move to ``new``, recording ``reason`` and the time, and log
        ``component.state_changed``. Raises TransitionError (state unchanged) when the
        table forbids the move. Never blocks."""
        old = self._state
        if new not in TRANSITIONS[old]:
            raise TransitionError(
                f"component {self.component!r}: transition {old.value} -> {new.value} "
                "is not allowed")
        self._state = new
        self._reason = reason
        self._changed_at = self._clock()
        self._log.info("component.state_changed", old=old.value, new=new.value,
                       reason=reason.value)
