"""Load a seccomp filter built from a JSON rule spec (no other sandbox step), then act.

``python seccomp_probe.py '<json>'`` prints one JSON line, or dies by the filter.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import signal
import sys
import threading

from bitcoin_supervisor.sandbox import ArgCompare, SeccompRules, SyscallRule, build_filter

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _raw(nr: int, *args: int) -> str:
    """Call syscall ``nr``; return "ok" or the errno name it failed with."""
    res = _libc.syscall(ctypes.c_long(nr), *(ctypes.c_ulong(a) for a in args))
    return "ok" if res >= 0 else errno.errorcode[ctypes.get_errno()]


def _thread() -> list[int]:
    box: list[int] = []
    worker = threading.Thread(target=lambda: box.append(6 * 7))
    worker.start()
    worker.join()
    return box


def _signal() -> list[int]:
    got: list[int] = []
    signal.signal(signal.SIGUSR1, lambda signum, _frame: got.append(signum))
    os.kill(os.getpid(), signal.SIGUSR1)
    return got


def main() -> None:
    spec = json.loads(sys.argv[1])
    rules = SeccompRules(
        default_action=spec["default"], allow=frozenset(spec.get("allow", [])),
        errno={k: getattr(errno, v) for k, v in spec.get("errno", {}).items()},
        rules=tuple(SyscallRule(r["syscall"], r["action"], tuple(
            ArgCompare(*a) for a in r["args"])) for r in spec.get("rules", [])))
    flt = build_filter(rules)
    flt.load()
    out: dict[str, object] = {}
    for action in spec["actions"]:
        match action:
            case "clone3":
                out[action] = _raw(435, 0, 0)
            case "thread":
                out[action] = _thread()
            case "signal":
                out[action] = _signal()
            case "getppid":
                out[action] = _raw(110)
            case "ioctl_tiocsti_high":
                out[action] = _raw(16, 0, 0x5412 | (1 << 32), 0)
            case "ioctl_tiocsti":
                out[action] = _raw(16, 0, 0x5412, 0)
            case "uname":
                out[action] = os.uname().sysname
            case _:
                raise ValueError(action)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
