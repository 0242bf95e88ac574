"""A component's warm standby: one more run of it, held ready to be promoted.

While the component runs, ``StandbySlot`` keeps one standby ``ProcessRun`` (launched the
same way, verified, its Init bootstrapped and its capabilities prepared by the broker,
its datadir closed); one that is lost before promotion is replaced after a backoff
(floored: a standby that cannot start must never become a tight loop). ``Component``
takes it when a start is due (``take``), and lets it go when the component stops or
fails (``let_go``), so that no start that follows can promote a standby of before.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from ._configrestart import RestartConfig
from ._run import ProcessRun, RunEnd
from ._state import classify_exit

__all__ = ["StandbySlot", "log_restored"]

MIN_RETRY_S = 0.1


class StandbySlot:
    """Keeps at most one standby run of a component; never blocks."""

    def __init__(self, *, make_run: Callable[[], ProcessRun], wanted: Callable[[], bool],
                 restart: RestartConfig, sleep: Callable[[float], Awaitable[None]],
                 log: Any) -> None:
        self._make_run = make_run
        self._wanted = wanted  # while true, a lost standby is replaced
        self._restart = restart
        self._sleep = sleep
        self._log = log
        self._run: ProcessRun | None = None
        self._task: asyncio.Task[RunEnd] | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._drops: set[asyncio.Future[Any]] = set()  # standbys being stopped

    @property
    def pid(self) -> int | None:
        """The standby process's pid while one exists, else None."""
        return self._run.pid if self._run is not None else None

    def ready(self) -> bool:
        """Whether a standby waits, verified and prepared, to be promoted."""
        run, task = self._run, self._task
        return run is not None and run.ready and task is not None and not task.done()

    def usage(self) -> dict[str, int] | None:
        """The standby's resource usage (its own cgroup), None without one. Blocking
        cgroupfs reads: call from an executor. Never raises."""
        run = self._run
        return run.usage() if run is not None else None

    def preactivate(self) -> None:
        """Let the ready standby open its datadir now (see ``ProcessRun.preactivate``)."""
        if self._run is not None and self.ready():
            self._run.preactivate()

    def take(self) -> tuple[ProcessRun, asyncio.Task[RunEnd]] | None:
        """The ready standby, promoted, and its task (the caller's run from now on);
        None when no standby is ready."""
        run, task = self._run, self._task
        if run is None or task is None or not self.ready():
            return None
        self._run = self._task = None
        self._log.info("component.standby_promoted", pid=run.pid)
        run.promote()
        return run, task

    def keep(self) -> None:
        """Start keeping a standby (when not doing so already)."""
        if self._keeper is None:
            self._keeper = asyncio.create_task(self._keep())

    def let_go(self) -> None:
        """Stop keeping a standby and tell the one there is to stop, at once; ``drop``
        waits for it to be gone."""
        keeper, self._keeper = self._keeper, None
        run, task = self._run, self._task
        self._run = self._task = None
        if keeper is not None:
            keeper.cancel()
        if run is not None and not run.promoted:
            run.stop()
        waits = [t for t in (keeper, task) if t is not None]
        if waits:
            drop = asyncio.ensure_future(asyncio.gather(*waits, return_exceptions=True))
            self._drops.add(drop)
            drop.add_done_callback(self._drops.discard)

    async def settled(self) -> None:
        """Return once every standby let go of is gone (before a process is started in
        its place). Never raises but CancelledError."""
        if self._drops:
            await asyncio.gather(*self._drops, return_exceptions=True)

    async def drop(self) -> None:
        """``let_go``, then wait until every standby let go of is gone. Never raises but
        CancelledError."""
        self.let_go()
        if self._drops:
            await asyncio.gather(*self._drops, return_exceptions=True)

    async def _keep(self) -> None:
        me = asyncio.current_task()
        failures = 0
        try:
            while self._wanted():
                run = self._make_run()
                task = asyncio.create_task(run.execute())
                self._run, self._task = run, task
                await run.standby_over.wait()
                if run.promoted:
                    return  # it runs as the component now
                end = await task
                if self._run is run:
                    self._run = self._task = None
                if run.stop_requested:
                    return
                failures = 1 if "ready" in run.marks else failures + 1
                cfg = self._restart
                delay = max(MIN_RETRY_S, min(cfg.backoff_initial_s * cfg.backoff_multiplier
                                             ** min(failures - 1, 64), cfg.backoff_max_s))
                self._lost(end, delay)
                await self._sleep(delay)
        finally:
            if self._keeper is me:
                self._keeper = None

    def _lost(self, end: RunEnd, delay: float) -> None:
        code = sig = None
        if end.returncode is not None:
            code, sig = ((end.returncode, None) if end.returncode >= 0
                         else (None, -end.returncode))
        reason = end.failure or (classify_exit(code, sig) if end.returncode is not None
                                 else None)
        self._log.warning("component.standby_lost", pid=end.pid, exit_code=code,
                          signal=signal.Signals(sig).name if sig else None,
                          reason=reason.value if reason is not None else None,
                          detail=end.detail, retry_s=delay)


def log_restored(log: Any, old: ProcessRun | None, new: ProcessRun) -> None:
    """Log ``component.restored`` for a promotion of ``new`` replacing ``old``: the
    total from the old process's death to the new one serving, and each step (ms)."""
    was = old.marks if old is not None else {}
    now = new.marks

    def ms(start: float | None, end: float | None) -> float | None:
        return None if start is None or end is None else round((end - start) * 1000, 3)
    # Its death is seen first either as its tree gone (pidfds) or as its link or exit
    # (the exit status may come later); the activation may start at the first.
    seen = [t for t in (was.get("exit_seen"), was.get("tree_gone")) if t is not None]
    died = min(seen) if seen else None
    handed = max(now.get("promote", 0.0), now.get("activated", 0.0)) or None
    served = now.get("first_call", now.get("brokered"))
    log.info("component.restored", pid=new.pid, total_ms=ms(died, served), standby=True,
             # How long the standby had been waiting, ready: seconds, not a step.
             standby_waited_s=round(now["promote"] - now["ready"], 3)
             if "promote" in now and "ready" in now else None,
             steps_ms={"death_seen_to_tree_gone": ms(died, was.get("tree_gone")),
                       "death_seen_to_promote": ms(died, now.get("promote")),
                       "activate": ms(now.get("activate"), now.get("activated")),
                       "rebroker": ms(handed, now.get("brokered")),
                       "first_call": ms(now.get("brokered"), now.get("first_call")),
                       "exit_to_cgroup_killed": ms(died, was.get("cleaned"))})
