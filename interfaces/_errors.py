"""The error hierarchy shared by every layer: one root, one class per kind of failure."""

from __future__ import annotations


class SupervisorError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(SupervisorError):
    """A configuration file is invalid; carries the file:line:col it points at."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        col: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.path = path
        self.line = line
        self.col = col
        self.hint = hint
        super().__init__(str(self))

    def location(self) -> str:
        """Return ``file:line:col`` (as much of it as is known), or ``""``."""
        parts = [p for p in (self.path, self.line, self.col) if p is not None]
        return ":".join(str(p) for p in parts)

    def __str__(self) -> str:
        loc = self.location()
        text = f"{loc}: {self.message}" if loc else self.message
        if self.hint:
            text += f" (hint: {self.hint})"
        return text


class PolicyError(ConfigError):
    """A sandbox policy file is invalid (same location format as ConfigError)."""


class SpawnError(SupervisorError):
    """A component process could not be created or did not come up."""


class SandboxError(SupervisorError):
    """A sandbox step failed or a required kernel feature is missing (fail closed)."""


class IpcError(SupervisorError):
    """Something went wrong on an IPC link; see the two subclasses."""


class PeerGoneError(IpcError):
    """The link broke: the peer process died or closed its end.

    Retrying on the same link is pointless; the caller needs a fresh capability.
    """


class RemoteError(IpcError):
    """The peer is alive but the code behind the call raised.

    ``message`` is a sanitised one-line description, never a remote traceback.
    """


class NotProvidedError(SupervisorError):
    """An Init was asked for a capability its role does not provide."""


class CapabilityRefusedError(RemoteError):
    """A provider refused what a consumer asked through its capability.

    Raised by the provider (the node) and, on the consumer's side of a link, by the
    proxy: the subclass crosses the link by name, so both sides see the same type.
    """


class RpcNameNotAllowedError(CapabilityRefusedError):
    """The consumer tried to register an RPC name its grant does not list."""


class RpcNameOwnedError(CapabilityRefusedError):
    """The consumer tried to register an RPC name another component owns."""


class LimitExceededError(CapabilityRefusedError):
    """The call would take the consumer over one of its limits (names, calls, sizes)."""


class InvalidArgumentError(CapabilityRefusedError):
    """An argument is out of range or malformed (a negative height, an empty name)."""


REFUSALS: dict[str, type[CapabilityRefusedError]] = {
    cls.__name__: cls for cls in (CapabilityRefusedError, RpcNameNotAllowedError,
                                  RpcNameOwnedError, LimitExceededError,
                                  InvalidArgumentError)}
