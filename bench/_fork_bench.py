"""``fork_server`` (issue 9, fast respawn): spawn-to-Echo of the wallet started cold and
unsandboxed, cold through the sandbox trampoline, and forked from its fork server; then
kill -9 of the running wallet until a wallet RPC is answered by the new process, with and
without fork servers, plus the daemon's own breakdown (``component.restored``). One run,
ratios against the cold unsandboxed spawn."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import time
from pathlib import Path
from statistics import median
from typing import Any

import aiohttp
import psutil

from bitcoin_supervisor.ipc import Protocol, make_protocol
from bitcoin_supervisor.sandbox import policy_for
from bitcoin_supervisor.supervisor._launcher import ConfinedLauncher, LaunchSpec

from . import _children as ch
from ._daemon import event_named, start_daemon
from ._options import Options
from ._report import Cell, Result
from ._stats import ratio, summarize

_SANDBOXED = next(v for v in ch.VARIANTS if v.sandboxed)


async def _echo_up(protocol: Protocol, child: ch.RunningChild) -> float:
    """Bootstrap, one Echo; return the ms since ``started`` was taken by the caller."""
    connection = await ch.connect(protocol, child, "wallet")
    try:
        if await (await connection.init.make_echo()).echo("ping") != "ping":
            raise RuntimeError(child.describe_failure("echoed something else"))
    finally:
        connection.close()
    return time.perf_counter()


async def _spawn_series(opts: Options, protocol: Protocol, rounds: int
                        ) -> dict[str, list[float]]:
    """Alternate the three ways of starting the wallet, ``rounds`` each."""
    root = opts.workdir / "spawn"
    settings = ch.role_settings("wallet", root, _SANDBOXED)
    env = ch.child_env(settings)
    policy = policy_for(settings)
    launcher = ConfinedLauncher()

    def spec(fork: bool, sandboxed: bool) -> LaunchSpec:
        return LaunchSpec(name="wallet", argv=ch.role_argv("wallet"), env=env,
                          datadir=Path(settings.datadir),
                          policy=policy if sandboxed else None, fork_server=fork)

    async def once(kind: str) -> float:
        started = time.perf_counter()
        if kind == "cold, unsandboxed (no trampoline)":
            child = await ch.plain(ch.role_argv("wallet"), env).start()
        else:
            chosen = spec(kind == "fork server, sandboxed", True)
            endpoint = await launcher.launch(chosen)
            child = ch.RunningChild(endpoint, release=lambda: launcher.release(chosen,
                                                                               endpoint))
        try:
            up = await _echo_up(protocol, child)
        finally:
            await child.stop()
        return (up - started) * 1000

    kinds = ("cold, unsandboxed (no trampoline)", "cold, sandboxed (trampoline)",
             "fork server, sandboxed")
    series: dict[str, list[float]] = {k: [] for k in kinds}
    try:
        await once(kinds[2])  # starts the template: its import cost is not a spawn's
        for _ in range(rounds):
            for kind in kinds:
                series[kind].append(await once(kind))
    finally:
        await launcher.close()
    return series


async def _rpc(session: aiohttp.ClientSession, url: str, auth: str, method: str,
               *params: str) -> dict[str, Any]:
    async with session.post(url, json={"jsonrpc": "1.0", "id": "bench", "method": method,
                                       "params": list(params)},
                            headers={"Authorization": auth}) as response:
        reply: dict[str, Any] = await response.json(content_type=None)
        return reply


async def _answered(session: aiohttp.ClientSession, url: str, auth: str) -> None:
    """Call ``getwalletinfo`` until it answers (no wallet process: the node refuses)."""
    while True:
        reply = await _rpc(session, url, auth, "getwalletinfo")
        if reply.get("error") is None:
            return


async def _kill_series(opts: Options, fork: bool, rounds: int, *, standby: bool = False
                       ) -> tuple[list[float], list[dict[str, Any]]]:
    """kill -9 the wallet's role process; ms until a wallet RPC is answered again. With
    ``standby``, each kill waits until the wallet's standby is ready (a kill before that
    would measure the fallback)."""
    variant = next(v for v in ch.DAEMON_VARIANTS if v.sandboxed)
    daemon = await start_daemon(opts.workdir / f"kill-{fork}-{standby}", variant,
                                fork_server=fork, standby=standby)
    answered: list[float] = []
    restored: list[dict[str, Any]] = []
    try:
        node = daemon.config.parent / "data" / "node"
        cookie = (node / ".cookie").read_text().strip()
        auth = "Basic " + base64.b64encode(cookie.encode()).decode()
        url = f"http://127.0.0.1:{daemon.rpcport}"
        async with aiohttp.ClientSession() as session:
            created = await _rpc(session, url, auth, "createwallet", "bench")
            if created.get("error") is not None:
                raise RuntimeError(f"createwallet failed: {created['error']}")
            await asyncio.wait_for(_answered(session, url + "/wallet/bench", auth), 60)
            for _ in range(rounds):
                mark = len(daemon.events)
                if standby:  # a standby ready that was never promoted: the fresh one
                    used = {e["pid"] for e in daemon.events
                            if event_named("component.standby_promoted", "wallet")(e)}
                    await daemon.wait_event(
                        lambda e, u=used: event_named("component.standby_ready", "wallet")(e)
                        and e.get("pid") not in u, timeout=60)
                waiter = daemon.component_pids()["wallet"]
                role = psutil.Process(waiter).children() or [psutil.Process(waiter)]
                started = time.perf_counter()
                # The role itself (PID 1 of its namespace): from here on only a new
                # process can answer.
                os.kill(role[0].pid, signal.SIGKILL)
                await asyncio.wait_for(_answered(session, url + "/wallet/bench", auth), 60)
                answered.append((time.perf_counter() - started) * 1000)
                _, event = await daemon.wait_event(
                    event_named("component.restored", "wallet"), after=mark)
                restored.append(event)
    finally:
        await daemon.stop()
    return answered, restored


async def fork_server(opts: Options) -> Result:
    """Spawn-to-Echo three ways and kill -9 -> wallet RPC answered, with and without fork
    servers. Raises RuntimeError if a child or the daemon fails."""
    rounds = opts.pick(1, 15)
    protocol = make_protocol()
    spawns = await _spawn_series(opts, protocol, rounds)
    base = summarize(spawns["cold, unsandboxed (no trampoline)"])
    rows: list[dict[str, Cell]] = []
    for label, values in spawns.items():
        stats = summarize(values)
        rows.append({"label": "spawn -> first Echo: " + label, **stats.to_row(),
                     "ratio_vs_cold_bare": ratio(stats.median, base.median)})
    kill_medians: dict[str, float] = {}
    for fork, standby in ((False, False), (True, False), (True, True)):
        answered, restored = await _kill_series(opts, fork, opts.pick(1, 20),
                                                standby=standby)
        stats = summarize(answered)
        name = ("warm standby" if standby else "fork server" if fork
                else "cold trampoline")
        kill_medians[name] = stats.median
        rows.append({"label": f"kill -9 wallet -> wallet RPC answered ({name})",
                     **stats.to_row(), "ratio_vs_cold_bare": ratio(stats.median, base.median)})
        steps = {k for e in restored for k, v in e["steps_ms"].items() if v is not None}
        for step in sorted(steps):
            values = [float(e["steps_ms"][step]) for e in restored
                      if e["steps_ms"].get(step) is not None]
            if min(values) <= 0:  # below the log's resolution: nothing to show
                continue
            rows.append({"label": f"  restored ({name}): {step}", **summarize(values).to_row(),
                         "ratio_vs_cold_bare": None})
        totals = [float(e["total_ms"]) for e in restored if e.get("total_ms") is not None]
        if totals:
            rows.append({"label": f"  restored ({name}): exit seen -> served (daemon)",
                         **summarize(totals).to_row(), "ratio_vs_cold_bare": None})
    fork_median = median(spawns["fork server, sandboxed"])
    standby_median = kill_medians["warm standby"]
    return Result(
        name="fork_server", title="fast respawn: cold vs fork server (wallet)", unit="ms",
        baseline=f"cold unsandboxed spawn, median {base.median:.1f} ms",
        columns=("label", "n", "median", "p90", "min", "ratio_vs_cold_bare"),
        rows=rows,
        notes=[f"targets: fork server spawn <= 0.5x cold unsandboxed (here "
               f"{fork_median / base.median:.2f}x); kill -9 -> wallet RPC answered <= 20 ms "
               f"median (here {standby_median:.1f} ms with the warm standby: "
               f"{standby_median / kill_medians['fork server']:.2f}x the fork server, "
               f"{standby_median / kill_medians['cold trampoline']:.2f}x cold)",
               "warm standby: a second wallet process, confined, verified and introduced to "
               "the node in advance, promoted at the kill (Init.activate opens its "
               "wallets, the prepared Chain is handed over); each kill waits until the "
               "fresh standby is ready",
               "kill -9 hits the wallet's role process (PID 1 of its namespace), so only "
               "a new process can answer; wallet restart with zero backoff",
               "restored rows: the daemon's component.restored breakdown (steps overlap "
               "where the child works while the supervisor waits)"],
        params={"rounds": rounds, "load_1min": os.getloadavg()[0]})
