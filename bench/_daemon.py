"""A real ``bitcoin-supervisor start`` on a private datadir and a free port, whose JSON log
events the benchmarks await (never sleep on)."""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bitcoin_supervisor.sandbox import bind_to_parent

from ._children import ROLES, SpawnVariant, free_port

CLI = str(Path(sys.executable).parent / "bitcoin-supervisor")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
Event = dict[str, Any]

# The bundled components, each restarting at once: the benchmark measures the restart
# path itself, not the configured backoff. The start limit (100,000 starts in 10,000 s)
# never stops a benchmark, yet keeps a crash loop at 10 starts a second on average, the
# most the config loader accepts.
_CONFIG = """\
[supervisor]
datadir = "{datadir}"
fork_server = {fork_server}
standby = {standby}

[components.node]
role = "node"
sandbox = "{sandbox_node}"
rpcport = {rpcport}
rpcbind = "127.0.0.1"

[components.wallet]
role = "wallet"
sandbox = "{sandbox_wallet}"

[components.index]
role = "index"
sandbox = "{sandbox_index}"
{extra}"""
_RESTART = """
[components.{name}.restart]
policy = "on-failure"
backoff_initial_s = 0.0
backoff_max_s = 0.0
start_limit_burst = 100000
start_limit_interval_s = 10000.0
"""


def state_changed(component: str, new: str) -> Callable[[Event], bool]:
    """Predicate: ``component`` entered state ``new``."""
    return lambda e: (e.get("event") == "component.state_changed"
                      and e.get("component") == component and e.get("new") == new)


def event_named(name: str, component: str | None = None) -> Callable[[Event], bool]:
    """Predicate: an event called ``name`` (about ``component`` if given)."""
    return lambda e: e.get("event") == name and (component is None
                                                  or e.get("component") == component)


class RunningDaemon:
    """The daemon process plus every JSON event it has logged so far, in order."""

    def __init__(self, process: asyncio.subprocess.Process, config: Path,
                 rpcport: int = 0) -> None:
        self.process = process
        self.config = config
        self.rpcport = rpcport  # the node's JSON-RPC port
        self.events: list[Event] = []
        self._raw: list[str] = []
        self._changed = asyncio.Condition()
        self._ended = False
        self._reader = asyncio.create_task(self._read())

    @property
    def pid(self) -> int:
        """The daemon's pid (the CLI runs it in the foreground)."""
        return self.process.pid

    async def _read(self) -> None:
        stream = self.process.stderr
        assert stream is not None
        while line := await stream.readline():
            text = line.decode(errors="replace")
            self._raw.append(text)
            try:
                event = json.loads(text)
            except ValueError:
                continue
            if isinstance(event, dict):
                async with self._changed:
                    self.events.append(event)
                    self._changed.notify_all()
        async with self._changed:
            self._ended = True
            self._changed.notify_all()

    async def wait_event(self, predicate: Callable[[Event], bool], *, after: int = 0,
                         timeout: float = START_TIMEOUT_S) -> tuple[int, Event]:
        """Return (index, event) of the first event at or after ``after`` that matches.

        Raises RuntimeError (with the log tail) if the daemon exits first, TimeoutError
        after ``timeout`` seconds.
        """
        def find() -> tuple[int, Event] | None:
            for index in range(after, len(self.events)):
                if predicate(self.events[index]):
                    return index, self.events[index]
            return None

        async with asyncio.timeout(timeout), self._changed:
            while (found := find()) is None:
                if self._ended:
                    raise RuntimeError("daemon exited; last lines:\n" + "".join(self._raw[-20:]))
                await self._changed.wait()
        return found

    def component_pids(self) -> dict[str, int]:
        """The latest running pid of every component: spawned as itself, or a standby
        promoted (a standby's own spawn does not count until then)."""
        return {e["component"]: int(e["pid"]) for e in self.events
                if (e.get("event") == "component.spawned" and not e.get("standby"))
                or e.get("event") == "component.standby_promoted"}

    async def stop(self) -> None:
        """SIGTERM the daemon and wait (SIGKILL its process group after a timeout)."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        await asyncio.gather(self._reader, return_exceptions=True)


async def start_daemon(workdir: Path, variant: SpawnVariant, *, extra: str = "",
                       timeout: float = START_TIMEOUT_S,
                       fork_server: bool = True, standby: bool = False) -> RunningDaemon:
    """Start a daemon under ``workdir`` whose components are sandboxed as ``variant`` says
    and return once it logged ``supervisor.ready``. ``extra`` is appended to the config
    (more component tables, with ``{sandbox_wallet}`` etc. filled in); ``timeout`` bounds
    the start.

    Raises RuntimeError (with the log tail) if a component fails or the daemon exits,
    TimeoutError after ``timeout``, ValueError for a variant the daemon cannot run (it
    always uses the trampoline).
    """
    if not variant.trampoline:
        raise ValueError(f"the daemon cannot launch variant {variant.name}: "
                         "pick one of DAEMON_VARIANTS")
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "bench.toml"
    rpcport = free_port()
    sandboxes = {f"sandbox_{role}": variant.config_value(role) for role in ROLES}
    config.write_text(_CONFIG.format(
        datadir=workdir / "data", rpcport=rpcport, **sandboxes,
        fork_server="true" if fork_server else "false",
        standby="true" if standby else "false",
        extra="".join(_RESTART.format(name=role) for role in ROLES)
        + extra.format(**sandboxes)))
    bench = os.getpid()
    # The daemon stops in order (SIGTERM: components, mounts) when the bench dies
    # unasked, e.g. killed by a test's deadline: in its own session, nothing else would
    # end it.
    process = await asyncio.create_subprocess_exec(
        CLI, "start", "--config", str(config), "--log-format", "json",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE, start_new_session=True,
        preexec_fn=lambda: bind_to_parent(bench, signal.SIGTERM))
    daemon = RunningDaemon(process, config, rpcport)
    try:
        _, first = await daemon.wait_event(
            lambda e: event_named("supervisor.ready")(e)
            or (e.get("event") == "component.state_changed" and e.get("new") == "failed"),
            timeout=timeout)
        if first["event"] != "supervisor.ready":
            raise RuntimeError(f"component failed to start: {first}")
    except BaseException:
        await daemon.stop()
        raise
    return daemon


async def run_cli(daemon: RunningDaemon, *args: str) -> None:
    """Run ``bitcoin-supervisor <verb> --config <daemon's> <args...>``; RuntimeError if it
    exits non-zero."""
    process = await asyncio.create_subprocess_exec(
        CLI, args[0], "--config", str(daemon.config), *args[1:],
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"bitcoin-supervisor {' '.join(args)} exited "
                           f"{process.returncode}: {err.decode(errors='replace').strip()}")


def _rpc_blocking(port: int, cookie: Path, method: str, wallet: str | None) -> Any:
    body = json.dumps({"jsonrpc": "1.0", "id": 1, "method": method, "params": []})
    auth = "Basic " + base64.b64encode(cookie.read_bytes().strip()).decode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/" if wallet is None else f"/wallet/{wallet}", body,
                     {"Authorization": auth, "Content-Type": "application/json"})
        reply = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    if reply.get("error"):
        raise RuntimeError(f"{method}: {reply['error']}")
    return reply["result"]


async def rpc(daemon: RunningDaemon, method: str, *, wallet: str | None = None) -> Any:
    """Call ``method`` (no params) on the node's JSON-RPC port with its cookie, off the
    loop; return the result. Raises RuntimeError for an RPC error, OSError or
    http.client.HTTPException when the node does not answer."""
    cookie = daemon.config.parent / "data" / "node" / ".cookie"
    return await asyncio.get_running_loop().run_in_executor(
        None, _rpc_blocking, daemon.rpcport, cookie, method, wallet)
