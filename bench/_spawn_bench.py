"""``spawn_to_init``: launch of a real role until its first Echo answer (directly, through the
sandbox trampoline, and confined by it), against the floor of a bare interpreter and of a
minimal Python child serving Echo, measured in the same run."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bitcoin_supervisor.ipc import Protocol, make_protocol

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


async def _exec_floor(launch: ch.Launch) -> Timing:
    started = time.perf_counter()
    child = await launch.start()
    code = await child.wait_exit()
    if code != 0:
        raise RuntimeError(child.describe_failure(f"exited {code}"))
    return Timing((time.perf_counter() - started) * 1000)


async def _first_echo(protocol: Protocol, launch: Callable[[], ch.Launch], name: str
                      ) -> Timing:
    """Launch until the first Echo answer; then stop and check the sandbox really ran."""
    prepared = launch()
    started = time.perf_counter()
    child = await prepared.start()
    try:
        connection = await ch.connect(protocol, child, name)
        echo = await connection.init.make_echo()
        if await echo.echo("ping") != "ping":
            raise RuntimeError(child.describe_failure("echoed something else"))
        up_ms = (time.perf_counter() - started) * 1000
    finally:
        stop_ms = await child.stop()
    connection.close()
    return Timing(up_ms, stop_ms, _sandbox_ms(child, prepared))


def _sandbox_ms(child: ch.RunningChild, launch: ch.Launch) -> float | None:
    """Total of the trampoline's ``sandbox.applied`` step times; RuntimeError when a
    sandboxed variant's child did not report one (it would be measured unsandboxed)."""
    if launch.policy is None:
        return None
    event = child.logged("sandbox.applied")
    if event is None:
        raise RuntimeError(child.describe_failure("logged no sandbox.applied"))
    steps = event.get("steps_ms", {})
    return float(sum(steps.values())) if isinstance(steps, dict) else None


def _cases(protocol: Protocol, opts: Options) -> list[_Case]:
    floor = ch.plain(ch.exec_floor_argv(), ch.child_env())
    probe = ch.plain(ch.probe_argv(), ch.child_env())
    cases = [
        _Case("python -S -c '' (exec + exit)", "-", lambda: _exec_floor(floor)),
        _Case(FLOOR, "-", lambda: _first_echo(protocol, lambda: probe, "probe")),
    ]
    for variant in ch.VARIANTS:
        for role in ch.ROLES:
            # Prepared per spawn (a fresh RPC port for the node), outside the timing.
            launch = functools.partial(ch.role_launch, role, opts.workdir / variant.name,
                                       variant)
            measure = functools.partial(_first_echo, protocol, launch, role)
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
    compared = _variant_ratios(cases)
    return Result(
        name="spawn_to_init",
        title="launch a role until its first Echo answer",
        unit="ms", baseline=f"{FLOOR}, median {floor.median:.1f} ms",
        columns=("label", "variant", "n", "median", "p90", "min", "ratio_vs_floor",
                 "sandbox_ms", "stop_ms"),
        rows=rows,
        notes=["time = launch + bootstrap/construct Init + make_echo + echo round trip",
               "direct: SocketpairLauncher, no trampoline; unsandboxed: the daemon's "
               "ConfinedLauncher with no policy (trampoline only); sandboxed: the same "
               "with the role's policy",
               "sandbox_ms = the trampoline's sandbox.applied steps (median, included in "
               "the time); stop_ms = SIGTERM until reaped (median)",
               "role datadirs are reused across rounds: only the first spawn creates state",
               *(f"{pair}: " + ", ".join(f"{role} {value:.2f}x"
                                         for role, value in by_role.items())
                 for pair, by_role in compared.items())],
        params={"rounds": rounds, "warmup_rounds": warmup,
                "variants": [v.name for v in ch.VARIANTS], "variant_ratios": compared})


# Each variant against the one that lacks only its last addition: the trampoline, then
# the policy it applies.
_COMPARED = (("sandboxed", "unsandboxed"), ("unsandboxed", "direct"))


def _variant_ratios(cases: list[_Case]) -> dict[str, dict[str, float]]:
    """Per role, the median spawn-to-Init of one variant over another (see ``_COMPARED``;
    pairs naming a variant not measured are left out)."""
    medians = {(c.label, c.variant): summarize(c.series("up_ms")).median for c in cases}
    out: dict[str, dict[str, float]] = {}
    for num, den in _COMPARED:
        by_role: dict[str, float] = {}
        for role in ch.ROLES:
            label = f"bitcoin-supervisor-{role}"
            if (label, num) in medians and (label, den) in medians:
                by_role[role] = ratio(medians[label, num], medians[label, den])
        if by_role:
            out[f"{num}/{den}"] = by_role
    return out
