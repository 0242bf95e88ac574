"""Build, export and load a role's seccomp filter with libseccomp (via pyseccomp).

pyseccomp is untyped; this module is its small typed adapter and the only place that
turns policy actions into libseccomp ones.
"""

from __future__ import annotations

import ctypes.util
import errno as errno_mod
import io
import os
from typing import Any

from bitcoin_supervisor.interfaces import SandboxError

from ._policy import SeccompRules

__all__ = ["SeccompFilter", "build_filter"]


def _import_pyseccomp() -> Any:
    """Import pyseccomp with its two ``ctypes.util.find_library`` calls answered by the
    sonames themselves: find_library runs ``ldconfig -p`` in a subprocess (~9 ms on every
    spawn), while ``dlopen`` resolves a soname through the loader's own cache anyway.
    ``libseccomp.so.2`` is the ABI pyseccomp binds (Debian's libseccomp2, installed by
    the Makefile); any other name still goes to the real lookup."""
    sonames = {"seccomp": "libseccomp.so.2", "c": "libc.so.6"}
    real = ctypes.util.find_library
    ctypes.util.find_library = lambda name: sonames.get(name) or real(name)
    try:
        import pyseccomp
    finally:
        ctypes.util.find_library = real
    return pyseccomp


seccomp = _import_pyseccomp()


def _action(text: str) -> int:
    simple = {
        "allow": seccomp.ALLOW,
        "kill_process": seccomp.KILL_PROCESS,
        "kill_thread": seccomp.KILL_THREAD,
        "trap": seccomp.TRAP,
        "log": seccomp.LOG,
    }
    if text in simple:
        return int(simple[text])
    return int(seccomp.ERRNO(getattr(errno_mod, text.removeprefix("errno:"))))


class SeccompFilter:
    """A built, not yet loaded filter. Loading is irreversible for this process."""

    def __init__(self, flt: Any) -> None:  # a pyseccomp.SyscallFilter
        self._filter = flt

    def pfc(self) -> str:
        """Return libseccomp's pseudo-filter-code text (stable; used for golden files)."""
        import tempfile  # golden files and `policy show` only, not a spawn

        with tempfile.TemporaryFile(mode="w+") as out:
            self._filter.export_pfc(out)
            out.seek(0)
            return out.read()

    def bpf(self) -> bytes:
        """Return the raw BPF program the kernel will run."""
        buf = io.BytesIO()
        read, write = os.pipe()
        try:
            self._filter.export_bpf(os.fdopen(write, "wb", closefd=False))
            os.close(write)
            write = -1
            while chunk := os.read(read, 65536):
                buf.write(chunk)
        finally:
            os.close(read)
            if write >= 0:
                os.close(write)
        return buf.getvalue()

    def load(self) -> None:
        """Install the filter on the calling process (all threads: TSYNC). Raises
        SandboxError when the kernel refuses; the process must then exit (fail closed)."""
        try:
            self._filter.load()
        except OSError as exc:
            raise SandboxError(f"loading the seccomp filter failed: {exc.strerror}") from exc


def build_filter(rules: SeccompRules) -> SeccompFilter:
    """Compile SeccompRules into a libseccomp filter for the native architecture.

    Pure (no process state changes). Arg compares are masked compares on the low 32 bits.
    Raises SandboxError if libseccomp rejects a rule (e.g. two actions for one syscall).
    Syscalls that do not exist on this architecture are skipped by libseccomp.
    """
    try:
        flt = seccomp.SyscallFilter(_action(rules.default_action))
        # Threads started before the filter must not stay unfiltered.
        flt.set_attr(seccomp.Attr.CTL_TSYNC, 1)
        flt.set_attr(seccomp.Attr.ACT_BADARCH, seccomp.KILL_PROCESS)
        for name in sorted(rules.allow):
            flt.add_rule(seccomp.ALLOW, name)
        for name, code in sorted(rules.errno.items()):
            flt.add_rule(seccomp.ERRNO(code), name)
        for rule in rules.rules:
            args = [seccomp.Arg(c.index, seccomp.MASKED_EQ, c.mask, c.value)
                    for c in rule.args]
            flt.add_rule(_action(rule.action), rule.syscall, *args)
    except OSError as exc:
        raise SandboxError(f"libseccomp rejected the filter: {exc.strerror}") from exc
    return SeccompFilter(flt)
