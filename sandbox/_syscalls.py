"""Syscall names and numbers of this machine, from libseccomp's own table.

Hand-written over ctypes rather than through pyseccomp: the supervisor only checks the
names in policies and names the syscall of a seccomp kill, and importing pyseccomp (with
ctypes.util, tempfile and its whole binding) costs the daemon ~1.2 MiB of its RSS for
good. Filters are still built with pyseccomp (``_seccomp``), in the processes they confine.
"""

from __future__ import annotations

import ctypes
from functools import cache

__all__ = ["syscall_name", "syscall_number"]

_SCMP_ARCH_NATIVE = 0
_NR_SCMP_ERROR = -1  # "unknown name"; other negative numbers are other arches' syscalls


@cache
def _lib() -> tuple[ctypes.CDLL, ctypes.CDLL]:
    # The soname pyseccomp binds (Debian's libseccomp2, installed by the Makefile); dlopen
    # finds it through the loader's cache, without ctypes.util's ldconfig subprocess.
    seccomp = ctypes.CDLL("libseccomp.so.2")
    seccomp.seccomp_syscall_resolve_name_arch.argtypes = [ctypes.c_uint32, ctypes.c_char_p]
    seccomp.seccomp_syscall_resolve_name_arch.restype = ctypes.c_int
    seccomp.seccomp_syscall_resolve_num_arch.argtypes = [ctypes.c_uint32, ctypes.c_int]
    seccomp.seccomp_syscall_resolve_num_arch.restype = ctypes.c_void_p
    libc = ctypes.CDLL(None)
    libc.free.argtypes = [ctypes.c_void_p]
    libc.free.restype = None
    return seccomp, libc


def syscall_number(name: str) -> int | None:
    """This machine's number of syscall ``name``, None if libseccomp knows no such name.
    Raises OSError if libseccomp cannot be loaded."""
    number = int(_lib()[0].seccomp_syscall_resolve_name_arch(_SCMP_ARCH_NATIVE,
                                                             name.encode()))
    return None if number == _NR_SCMP_ERROR else number


def syscall_name(number: int) -> str | None:
    """The name of syscall ``number`` on this machine, None if unknown. Raises OSError if
    libseccomp cannot be loaded."""
    seccomp, libc = _lib()
    pointer = seccomp.seccomp_syscall_resolve_num_arch(_SCMP_ARCH_NATIVE, number)
    if not pointer:
        return None
    try:
        return ctypes.string_at(pointer).decode(errors="replace")
    finally:
        libc.free(pointer)  # libseccomp returns a strdup'ed copy
