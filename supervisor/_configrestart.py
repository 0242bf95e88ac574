"""The ``restart`` key of a component: a policy name or a table, checked so that no
setting can make an unbounded restart loop.

Split from ``_config.py``: the loop rule needs every restart key at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

from ._configcheck import TomlChecker, table_name, type_name

__all__ = ["MAX_RESTARTS_PER_S", "POLICIES", "Policy", "RestartConfig", "check_restart"]

Policy = Literal["no", "on-failure", "always"]
POLICIES: tuple[Policy, ...] = ("no", "on-failure", "always")
_RESTART_KEYS = ("policy", "backoff_initial_s", "backoff_max_s", "backoff_multiplier",
                 "start_limit_burst", "start_limit_interval_s")
# A crash loop may go on (systemd's StartLimitIntervalSec=0) but never faster than this
# many starts a second: a program that dies at once would otherwise be started as fast
# as the host can fork, for ever.
MAX_RESTARTS_PER_S = 10.0

@dataclass(frozen=True)
class RestartConfig:
    """When and how fast a component that exited is started again (systemd semantics)."""

    policy: Policy
    backoff_initial_s: float = 0.1
    backoff_max_s: float = 30.0
    backoff_multiplier: float = 2.0
    start_limit_burst: int = 5
    start_limit_interval_s: float = 60.0

    @property
    def settled_delay_s(self) -> float:
        """The delay between restarts once a crash loop has gone on long enough: zero
        backoff stays zero, a multiplier of 1 never grows, otherwise the cap."""
        if self.backoff_initial_s == 0 or self.backoff_multiplier == 1:
            return self.backoff_initial_s
        return self.backoff_max_s


def check_restart(checker: TomlChecker, value: object, path: tuple[str, ...]) -> RestartConfig:
    """Return the RestartConfig of ``restart = VALUE`` at ``path``; raises a located
    ConfigError for a wrong type, an unknown key or policy, an out-of-range number, and
    for settings that let a crash loop go on at more than MAX_RESTARTS_PER_S."""
    if isinstance(value, str):
        return RestartConfig(cast(Policy, checker.choice(value, path, "restart policy",
                                                         POLICIES)))
    if not isinstance(value, dict):
        raise checker.error(path, f"'restart' in {table_name(path[:-1])} must be a policy "
                            f"string or a table, not {type_name(value)}", value=True)
    checker.keys(value, path, _RESTART_KEYS)
    policy = checker.choice(value.get("policy", "on-failure"), path + ("policy",),
                            "restart policy", POLICIES)
    initial = checker.number(value, path, "backoff_initial_s", 0.1, 0.0)
    config = RestartConfig(
        policy=cast(Policy, policy), backoff_initial_s=initial,
        backoff_max_s=checker.number(value, path, "backoff_max_s", 30.0, initial),
        backoff_multiplier=checker.number(value, path, "backoff_multiplier", 2.0, 1.0),
        start_limit_burst=checker.number(value, path, "start_limit_burst", 5, 1,
                                         integer=True),
        start_limit_interval_s=checker.number(value, path, "start_limit_interval_s",
                                              60.0, 0.0))
    if config.policy != "no":
        _check_bounded(checker, config, value, path)
    return config


def _check_bounded(checker: TomlChecker, config: RestartConfig, table: dict[str, object],
                   path: tuple[str, ...]) -> None:
    """Refuse settings whose sustained restart rate (the backoff's or the start limit's,
    whichever is slower) exceeds MAX_RESTARTS_PER_S."""
    delay, burst = config.settled_delay_s, config.start_limit_burst
    interval = config.start_limit_interval_s
    by_backoff = 1 / delay if delay > 0 else float("inf")
    by_limit = burst / interval if interval > 0 else float("inf")
    if min(by_backoff, by_limit) <= MAX_RESTARTS_PER_S:
        return
    limit = (f"up to {burst} times in {interval:g} s" if interval > 0
             else "with no start limit")
    key = next((k for k in ("start_limit_interval_s", "start_limit_burst", "backoff_max_s",
                            "backoff_initial_s") if k in table), None)
    raise checker.error(path + ((key,) if key else ()), f"{table_name(path)} restarts "
                        f"every {delay:g} s, {limit}: an unbounded restart loop",
                        f"let the backoff reach {1 / MAX_RESTARTS_PER_S:g} s or more, or "
                        f"keep the start limit under {MAX_RESTARTS_PER_S:g} starts a second",
                        value=True)
