"""``spawn_to_init``: Popen of a real role until its first Echo answer, against the floor of
a bare interpreter and of a minimal Python child serving Echo, measured in the same run."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bitcoin_supervisor.interfaces import ComponentSettings
from bitcoin_supervisor.ipc import PopenSpawner, Protocol, Spawner, make_protocol

from . import _children as ch
from ._options import Options
from ._report import Cell, Result
from ._stats import ratio, summarize

FLOOR = ch.FLOOR_LABEL


@dataclass(frozen=True)
class Timing:
    """One spawn: ms to the first answer, ms to stop, ms the child spent sandboxing."""

    up_ms: float
    stop_ms: float | None = None
    sandbox_ms: float | None = None


@dataclass
class _Case:
    """One thing to spawn, and its timings so far."""

    label: str
    variant: str
    measure: Callable[[], Awaitable[Timing]]
    timings: list[Timing] = field(default_factory=list)

    def series(self, attr: str) -> list[float]:
        """Every non-None value of ``attr`` over the recorded timings."""
        return [v for t in self.timings if (v := getattr(t, attr)) is not None]


async def _exec_floor(spawner: Spawner) -> Timing:
    started = time.perf_counter()
    child = await ch.spawn(spawner, ch.exec_floor_argv(), ch.child_env())
    code = await child.wait_exit()
    if code != 0:
        raise RuntimeError(child.describe_failure(f"exited {code}"))
    return Timing((time.perf_counter() - started) * 1000)


async def _first_echo(protocol: Protocol, spawner: Spawner, argv: list[str],
                      settings: Callable[[], ComponentSettings | None], name: str
                      ) -> Timing:
    """Spawn until the first Echo answer; then stop and check the sandbox really ran."""
    component = settings()
    env = ch.child_env(component)
    started = time.perf_counter()
    child = await ch.spawn(spawner, argv, env)
    try:
        connection = await ch.connect(protocol, child, name)
        echo = await connection.init.make_echo()
        if await echo.echo("ping") != "ping":
            raise RuntimeError(child.describe_failure("echoed something else"))
        up_ms = (time.perf_counter() - started) * 1000
    finally:
        stop_ms = await child.stop()
    connection.close()
    return Timing(up_ms, stop_ms, _sandbox_ms(child, component))


def _sandbox_ms(child: ch.RunningChild, settings: ComponentSettings | None) -> float | None:
    """Total of the child's own ``sandbox.applied`` step times; RuntimeError when a
    sandboxed variant's child did not report one (it would be measured unsandboxed)."""
    if settings is None or settings.sandbox is None:
        return None
    event = child.logged("sandbox.applied")
    if event is None:
        raise RuntimeError(child.describe_failure("logged no sandbox.applied"))
    steps = event.get("steps_ms", {})
    return float(sum(steps.values())) if isinstance(steps, dict) else None


def _cases(protocol: Protocol, opts: Options) -> list[_Case]:
    floor_spawner = PopenSpawner()
    cases = [
        _Case("python -S -c '' (exec + exit)", "-", lambda: _exec_floor(floor_spawner)),
        _Case(FLOOR, "-", lambda: _first_echo(protocol, floor_spawner, ch.probe_argv(),
                                              lambda: None, "probe")),
    ]
    for variant in ch.VARIANTS:
        spawner = variant.spawner()
        for role in ch.ROLES:
            settings = functools.partial(ch.role_settings, role,
                                         opts.workdir / variant.name, variant)
            measure = functools.partial(_first_echo, protocol, spawner, ch.role_argv(role),
                                        settings, role)
            cases.append(_Case(f"bitcoin-supervisor-{role}", variant.name, measure))
    return cases


async def spawn_to_init(opts: Options) -> Result:
    """Time spawn -> connect -> ``Init.make_echo()`` -> ``echo()`` for every role and
    variant; cases run round-robin so drift hits all alike. Raises RuntimeError if a
    child fails to come up."""
    protocol = make_protocol()
    cases = _cases(protocol, opts)
    warmup, rounds = opts.pick(0, 1), opts.pick(2, 12)
    for index in range(warmup + rounds):
        for case in cases:
            timing = await case.measure()
            if index >= warmup:
                case.timings.append(timing)
    floor = summarize(next(c for c in cases if c.label == FLOOR).series("up_ms"))
    rows: list[dict[str, Cell]] = []
    for case in cases:
        stats = summarize(case.series("up_ms"))
        stops, sandbox = case.series("stop_ms"), case.series("sandbox_ms")
        rows.append({"label": case.label, "variant": case.variant, **stats.to_row(),
                     "ratio_vs_floor": ratio(stats.median, floor.median),
                     "sandbox_ms": summarize(sandbox).median if sandbox else None,
                     "stop_ms": summarize(stops).median if stops else None})
    return Result(
        name="spawn_to_init",
        title="spawn with PopenSpawner until the first Echo answer",
        unit="ms", baseline=f"{FLOOR}, median {floor.median:.1f} ms",
        columns=("label", "variant", "n", "median", "p90", "min", "ratio_vs_floor",
                 "sandbox_ms", "stop_ms"),
        rows=rows,
        notes=["time = Popen + bootstrap/construct Init + make_echo + echo round trip",
               "sandbox_ms = the child's own sandbox.applied steps (median, included in "
               "the time); stop_ms = SIGTERM until reaped (median)",
               "role datadirs are reused across rounds: only the first spawn creates state"],
        params={"rounds": rounds, "warmup_rounds": warmup,
                "variants": [v.name for v in ch.VARIANTS]})
