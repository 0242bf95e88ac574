"""Stand-in for the sandbox trampoline in the cgroup tests: joins the cgroups whose fds it
inherited, leaves a grandchild behind that escaped its parent (double fork, own session),
prints one JSON line and holds until killed.

argv: ``hold|fork`` then the inherited fds. ``fork``: the grandchild keeps forking
short-lived children, so a kill must win against new processes appearing.
"""

from __future__ import annotations

import json
import os
import signal
import sys

from bitcoin_supervisor.interfaces import SupervisorError
from bitcoin_supervisor.sandbox import join_cgroup_fds


def _grandchild(mode: str, ready: int) -> None:
    os.write(ready, f"{os.getpid()}\n".encode())
    os.close(ready)
    while mode == "fork":
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    while True:
        signal.pause()


def main() -> None:
    mode, fds = sys.argv[1], [int(fd) for fd in sys.argv[2:]]
    try:
        join_cgroup_fds(fds)
    except SupervisorError as exc:
        print(exc, file=sys.stderr, flush=True)
        sys.exit(78)
    read, write = os.pipe()
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.close(read)
            _grandchild(mode, write)
        os._exit(0)  # the grandchild is reparented away from this process tree
    os.close(write)
    grandchild = int(os.read(read, 32))
    os.wait()
    with open("/proc/self/cgroup", encoding="ascii") as fh:
        cgroup = fh.read()
    print(json.dumps({"pid": os.getpid(), "grandchild": grandchild, "cgroup": cgroup}),
          flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
