"""Translating errors across the capnp boundary: KJ exceptions in, one-line failures out."""

from __future__ import annotations

import functools
from typing import Any

import capnp

from bitcoin_supervisor.interfaces import REFUSALS, IpcError, PeerGoneError, RemoteError

_MAX_MESSAGE = 300
# Prefixes KJ and pycapnp put in front of a remote description; a capability forwarded
# through a middle process collects one "remote exception: " per hop.
_PREFIXES = ("remote exception: ", "message = ")


def remote_message(description: str) -> str:
    """Return the one line worth showing from a KJ exception description.

    Our own servers send exactly one line. A foreign Python server sends a whole
    traceback, whose last line is ``Type: message``; C++ servers send one line. So the
    last non-empty line is kept, stripped of KJ's prefixes and capped in length.
    """
    lines = [line.strip() for line in description.splitlines() if line.strip()]
    text = lines[-1] if lines else ""
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if text.startswith(prefix):
                text = text[len(prefix):]
                changed = True
    if len(text) > _MAX_MESSAGE:
        return text[:_MAX_MESSAGE] + "…"
    return text or "remote call failed"


def translate(exc: capnp.KjException, peer: str) -> IpcError:
    """Map a KJ exception from a call to ``peer`` onto the interfaces' error types.

    Classified by ``exc.type`` only: ``DISCONNECTED`` means the link (or a link further
    along a forwarded capability) broke; anything else means the remote code failed,
    and a refusal named in ``interfaces.REFUSALS`` comes back as that subclass.
    """
    description = str(exc.description or "")
    if exc.type == "DISCONNECTED":
        return PeerGoneError(f"{peer}: link lost ({remote_message(description)})")
    message = remote_message(description)
    kind, _, rest = message.partition(": ")
    refusal = REFUSALS.get(kind)
    # A provider's refusal keeps its type across the link (the name is all that crosses).
    return RemoteError(message) if refusal is None else refusal(rest)


class _Sanitised(Exception):
    """An exception that pycapnp turns into a message without a traceback.

    pycapnp formats ``traceback.format_exception(type(e), e, e.__traceback__)`` and sends
    the text to the peer. Hiding ``__traceback__`` from Python-level lookups (the C-level
    slot still works for the interpreter) leaves only ``Type: message``.
    """

    __module__ = "builtins"  # keeps the module path out of the formatted type name

    @property
    def __traceback__(self) -> None:
        return None

    @__traceback__.setter
    def __traceback__(self, _value: Any) -> None:
        return None


@functools.cache
def _sanitised_type(name: str) -> type[_Sanitised]:
    return type(name, (_Sanitised,), {"__module__": "builtins"})


def sanitised(exc: BaseException) -> Exception:
    """Return an exception that reaches the peer as the one line ``Type: message``.

    Only the exception's class name and first line of its message cross the link: no
    traceback, no file paths, no chained causes.
    """
    lines = str(exc).strip().splitlines()
    message = lines[0] if lines else "error"
    if len(message) > _MAX_MESSAGE:
        message = message[:_MAX_MESSAGE] + "…"
    error = _sanitised_type(type(exc).__name__)(message)
    error.__suppress_context__ = True
    return error
