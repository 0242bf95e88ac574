"""Servers: ``interfaces`` implementations exported as capnp capabilities (Bitcoin Core's
ProxyServer), one class per row of the method table. Failures cross the link as one line;
the details stay in our log."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ClassVar, cast

from bitcoin_supervisor import log
from bitcoin_supervisor.interfaces import SupervisorError

from . import _clients, _errors
from ._convert import Capability, Converter
from ._link import Link
from ._methods import INTERFACES, Interface, Method, all_methods
from ._schema import load_schemas

_logger = log.get_logger()


class ThreadImpl:
    """A libmultiprocess ``Thread`` handle; Python servers run every call on their loop."""

    def __init__(self, name: str) -> None:
        self._name = name

    async def get_name(self) -> str:
        """Return the name the client gave the thread."""
        return self._name


class ThreadMapImpl:
    """Hands out ``Thread`` handles so libmultiprocess-style clients can fill Context."""

    async def make_thread(self, name: str) -> ThreadImpl:
        """Return a new handle called ``name``."""
        return ThreadImpl(name)


async def _construct(_thread_map: Any) -> ThreadMapImpl:
    # The client's ThreadMap is not needed: Python callbacks need no named thread.
    return ThreadMapImpl()


async def _make_pool(_count: int) -> None:
    # A Python server already runs every call on its loop: it is its own pool.
    return None


async def _destroy() -> None:
    # Python objects are freed when the last capability goes; nothing to destroy.
    return None


# libmultiprocess's protocol methods (table rows without an ABC method), by capnp name.
_PROTOCOL: dict[str, Callable[..., Awaitable[Any]]] = {
    "construct": _construct,
    "destroy": _destroy,
    "makePool": _make_pool,
}


class ServerBase:
    """Common part of every server: the implementation it forwards to and its link.

    It comes first in a server's bases: pycapnp's generated ``Server.__init__`` takes no
    arguments and would otherwise shadow this one.
    """

    _interface: ClassVar[str] = ""

    def __init__(self, impl: Any, link: Link) -> None:
        self._impl = impl
        self._link = link

    def _log_failure(self, method: str, exc: Exception) -> None:
        keys = {"interface": self._interface, "method": method,
                "component": self._link.component, "error": f"{type(exc).__name__}: {exc}"}
        if isinstance(exc, SupervisorError):
            # Expected failures (NotProvidedError, PeerGoneError...): the line says it all.
            _logger.warning("ipc.call_failed", **keys)
        else:
            _logger.error("ipc.call_failed", exc_info=exc, **keys)


def _server_method(method: Method) -> Callable[[ServerBase, Any], Coroutine[Any, Any, None]]:
    """The ``<method>_context`` pycapnp calls for one table row: convert the parameters,
    call the implementation, convert the result; log and sanitise any failure."""
    params = method.params

    async def serve(self: ServerBase, context: Any) -> None:
        started = time.perf_counter()
        try:
            reader = context.params
            args = [get_value(param.conv, reader, param.capnp, self._link)
                    for param in params]
            target = (_PROTOCOL[method.capnp] if method.name is None
                      else getattr(self._impl, method.name))
            value = await target(*args)
            if method.result is not None:
                results = context.results
                if method.optional:
                    results.hasResult = value is not None
                if value is not None or not method.optional:
                    put_value(method.result, results, method.result_field, value, self._link)
        except Exception as exc:  # the peer's call boundary: log it here, one line there
            self._log_failure(method.capnp, exc)
            self._link.log_call(self._interface, method.capnp, "server", started,
                                error=f"{type(exc).__name__}: {exc}")
            raise _errors.sanitised(exc) from None
        self._link.log_call(self._interface, method.capnp, "server", started)

    serve.__name__ = serve.__qualname__ = method.capnp + "_context"
    return serve


def _server_class(interface: Interface) -> type[ServerBase]:
    """A capnp server class for ``interface`` whose methods forward to an implementation."""
    capnp_base = getattr(getattr(load_schemas(), interface.file), interface.name).Server
    namespace: dict[str, Any] = {
        "_interface": interface.name,
        "__doc__": f"Serves a ``{interface.name}`` implementation as a capnp capability.",
        "__module__": __name__,
    }
    for method in all_methods(interface):
        namespace[method.capnp + "_context"] = _server_method(method)
    return cast(type[ServerBase],
                type(f"{interface.name}Server", (ServerBase, capnp_base), namespace))


SERVERS: dict[str, type[ServerBase]] = {i.name: _server_class(i) for i in INTERFACES}
"""The server class of every interface in the table, by capnp interface name."""


def export(obj: Any, interface: str, link: Link) -> Any:
    """Return what goes into a capability field of ``interface`` for ``obj``.

    A client proxy hands through its raw capability (native forwarding, no Python in the
    later path); a local implementation is wrapped in its server.
    """
    if isinstance(obj, _clients.CapnpClient):
        return obj.raw
    return SERVERS[interface](obj, link)


def put_value(conv: Converter, builder: Any, field: str, value: Any, link: Link) -> None:
    """Write ``value`` into ``field`` of ``builder`` (capabilities exported on ``link``)."""
    if isinstance(conv, Capability):
        setattr(builder, field, export(value, conv.interface, link))
    else:
        conv.put(builder, field, value)


def get_value(conv: Converter, reader: Any, field: str, link: Link) -> Any:
    """Read ``field`` of ``reader`` (capabilities become proxies on ``link``)."""
    if isinstance(conv, Capability):
        return _clients.proxy(conv.interface, getattr(reader, field), link)
    return conv.get(reader, field)
