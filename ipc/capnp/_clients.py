"""Client proxies: capnp capabilities seen as the ``interfaces`` types (Bitcoin Core's
ProxyClient), one class per row of the method table. No capnp object escapes from here
except through ``CapnpClient.raw``."""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar, cast

import capnp

from . import _errors, _servers
from ._link import Link
from ._methods import INTERFACES, Interface, Method, all_methods


class CapnpClient:
    """Base of every client proxy: one capnp capability plus the link it lives on.

    Passing a proxy into a call on any link hands over ``raw``, so pycapnp forwards the
    capability natively and no Python code sits in the later call path.
    """

    _interface: ClassVar[str] = ""

    def __init__(self, raw: Any, link: Link) -> None:
        self._raw = raw
        self._link = link

    @property
    def raw(self) -> Any:
        """The underlying pycapnp capability client (for ``ipc/capnp`` code only)."""
        return self._raw

    def _request(self, method: Method) -> Any:
        request = getattr(self._raw, method.capnp + "_request")()
        if method.context and self._link.thread is not None:
            request.context.thread = self._link.thread
        return request

    async def _await(self, method: str, promise: Any) -> Any:
        """Await the response to a sent request; KJ errors become IpcError subclasses.
        Logs one ``ipc.call`` (direction ``client``) when the link logs calls."""
        started = time.perf_counter()
        try:
            response = await promise
        except capnp.KjException as exc:
            error = _errors.translate(exc, self._link.component)
        else:
            self._link.log_call(self._interface, method, "client", started)
            return response
        # Raised outside the except block, and unbound once raised: a frame that still
        # held the error (or the KjException) while the error's traceback holds the frame
        # is a cycle, which kept this capability and promise alive until a collection.
        try:
            self._link.log_call(self._interface, method, "client", started, error=str(error))
            raise error from None
        finally:
            del error, promise


def _client_method(method: Method, abc_method: Callable[..., Any]
                   ) -> Callable[..., Coroutine[Any, Any, Any]]:
    """The proxy method for one table row: convert the arguments, call, convert back."""
    params = method.params
    signature = inspect.signature(abc_method)

    async def call(self: CapnpClient, *args: Any, **kwargs: Any) -> Any:
        if kwargs or len(args) != len(params):  # defaults and keywords: the ABC's rules
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            args = bound.args[1:]
        request = self._request(method)
        for param, value in zip(params, args, strict=True):
            _servers.put_value(param.conv, request, param.capnp, value, self._link)
        response = await self._await(method.capnp, request.send())
        if method.result is None or (method.optional and not response.hasResult):
            return None
        return _servers.get_value(method.result, response, method.result_field, self._link)

    call.__name__ = call.__qualname__ = abc_method.__name__
    call.__doc__ = abc_method.__doc__
    call.__signature__ = signature  # type: ignore[attr-defined]
    return call


def _client_class(interface: Interface) -> type[CapnpClient]:
    """A ``CapnpClient`` subclass implementing ``interface.abc`` from the table."""
    namespace: dict[str, Any] = {
        "_interface": interface.name,
        "__doc__": f"``{interface.name}`` in another process (a capnp capability).",
        "__module__": __name__,
    }
    bases: tuple[type, ...] = (CapnpClient,)
    if interface.abc is not None:
        bases += (interface.abc,)
        for method in all_methods(interface):
            if method.name is not None:
                namespace[method.name] = _client_method(method,
                                                        getattr(interface.abc, method.name))
    return cast(type[CapnpClient], type(f"Capnp{interface.name}Client", bases, namespace))


CLIENTS: dict[str, type[CapnpClient]] = {i.name: _client_class(i) for i in INTERFACES}
"""The proxy class of every interface in the table, by capnp interface name."""


def proxy(interface: str, raw: Any, link: Link) -> CapnpClient:
    """Wrap the capability ``raw`` of ``interface`` received on ``link`` in its proxy."""
    return CLIENTS[interface](raw, link)


async def construct_init(raw_init: Any, link: Link, interface: str = "Init") -> CapnpClient:
    """Run libmultiprocess's handshake on a bootstrapped Init and return its proxy.

    Sends ``construct`` with a null ThreadMap (this side runs no thread pool a C++ peer
    could call back into) and pipelines ``makeThread`` on the peer's ThreadMap, so the
    thread every later call names in ``Context.thread`` costs no extra round trip.
    ``interface`` is the table row of the peer's Init (``CoreInit`` for a bitcoin-node).
    Raises PeerGoneError/RemoteError if ``construct`` fails.
    """
    promise = raw_init.construct_request().send()
    make_thread = promise.threadMap.makeThread_request()
    make_thread.name = f"ipc-client-{os.getpid()}"
    thread = make_thread.send().result
    await proxy(interface, raw_init, link)._await("construct", promise)
    return proxy(interface, raw_init, Link(component=link.component, debug=link.debug,
                                           thread=thread))


async def reconstruct(init: CapnpClient) -> None:
    """Call ``construct`` again on a constructed Init: one round trip through the peer's
    event loop that needs no interface beyond the handshake (a liveness probe). The
    ThreadMap it returns is released at once. Raises PeerGoneError/RemoteError."""
    await init._await("construct", init.raw.construct_request().send())
