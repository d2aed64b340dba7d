"""The one exception tree of ``py_nodes``.

::

    PyNodesError                     base of everything this package raises
    ├── TermError
    │   ├── DecodeError              malformed external term format (also a ValueError)
    │   └── EncodeError              a Python value with no Erlang term (also a TypeError)
    ├── EpmdError                    epmd refused, or could not be reached
    ├── TlsError                     TLS settings that cannot be used (a missing file...)
    ├── DistributionError
    │   ├── HandshakeError           the peer refused us, or we refused the peer
    │   │   └── CookieMismatch       the challenge digest did not match
    │   ├── ProtocolError            a malformed or oversize frame from a connected peer
    │   └── ConnectionLost           the connection closed under an operation
    ├── NodeDown                     the target node cannot be reached
    └── ProcessError
        ├── NoProc                   the target process does not exist
        ├── CallTimeout              no reply to a call or spawn in time (also a TimeoutError)
        ├── CallExit                 the callee exited during a call; ``.reason`` is the term
        └── SpawnError               a node refused a spawn request; ``.reason``: badopt,
                                     notsup, system_limit...
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CallExit",
    "CallTimeout",
    "ConnectionLost",
    "CookieMismatch",
    "DecodeError",
    "DistributionError",
    "EncodeError",
    "EpmdError",
    "HandshakeError",
    "NoProc",
    "NodeDown",
    "ProcessError",
    "ProtocolError",
    "PyNodesError",
    "SpawnError",
    "TermError",
    "TlsError",
]


class PyNodesError(Exception):
    """Base of every error raised by py_nodes."""


class TermError(PyNodesError):
    """A term could not be converted."""


class DecodeError(TermError, ValueError):
    """Input is not valid external term format."""


class EncodeError(TermError, TypeError):
    """A Python value has no external term representation."""


class EpmdError(PyNodesError):
    """epmd could not be reached or refused a request."""


class TlsError(PyNodesError):
    """A node's TLS settings cannot be used: a missing or unreadable certificate, key or CA."""


class DistributionError(PyNodesError):
    """Something went wrong on a distribution connection."""


class HandshakeError(DistributionError):
    """The distribution handshake failed."""


class CookieMismatch(HandshakeError):
    """The peer's challenge digest does not match our cookie."""


class ProtocolError(DistributionError):
    """A connected peer sent a malformed or oversize frame."""


class ConnectionLost(DistributionError):
    """The connection closed while an operation was under way."""


class NodeDown(PyNodesError):
    """The target node cannot be reached."""


class ProcessError(PyNodesError):
    """An operation on a process failed."""


class NoProc(ProcessError):
    """The target process does not exist."""


class CallTimeout(ProcessError, TimeoutError):
    """A call or a spawn request got no reply within its timeout."""


class CallExit(ProcessError):
    """The callee exited during a call."""

    def __init__(self, reason: Any, message: str | None = None) -> None:
        self.reason = reason
        super().__init__(message if message is not None else f"callee exited: {reason!r}")


class SpawnError(ProcessError):
    """A node refused to spawn a process (SPAWN_REPLY with an error atom)."""

    def __init__(self, reason: Any, message: str | None = None) -> None:
        self.reason = reason
        super().__init__(message if message is not None else f"spawn refused: {reason!r}")
